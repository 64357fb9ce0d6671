"""LitServe peer for bench/lone-request.ts: the PaddleOCR text-orientation classifier (text-orientation-fp32) served by
LitServe (litserve==0.2.19) on onnxruntime, the way a LitServe user writes a LitAPI, with its batching on.

POST the raw image bytes (content-type image/png) to /predict; the answer is {"model", "predictions": [{"label",
"score"}, ...]} sorted by score, as Muon Serve's. Preprocessing is what models/text-orientation-fp32/manifest.json
describes (BGR, height 48, width min(192, ceil(48 w / h)), bilinear, (x / 255 - 0.5) / 0.5, zero padding to 192), with
PIL, the same code as bench/peer/kserve_service.py.

LitServe reads a request body as JSON or as a form only. So that all servers get the same bytes, this script lets its
request handler pass an image/* body on as bytes (one function wrapped, below), rather than sending base64 in JSON.

Environment: MUON_PEER_MODEL (the .onnx file, required), THREADS (onnxruntime intra-op threads, default 2),
PORT (default 3300), MAX_BATCH (LitServe's max_batch_size, default 32; batch_timeout 0: a batch is whatever waits).

Run: /tmp/muon-litserve-venv/bin/python bench/peer/litserve_service.py
"""

import io
import math
import os

import litserve as ls
import numpy as np
import onnxruntime as ort
from litserve.server import BaseRequestHandler
from PIL import Image

NAME = "text-orientation-fp32"
LABELS = ["0", "180"]
HEIGHT, WIDTH = 48, 192

_prepare = BaseRequestHandler._prepare_request


async def _prepare_raw(self, request, request_type):
    if request.headers.get("content-type", "").startswith("image/"):
        return await request.body()
    return await _prepare(self, request, request_type)


BaseRequestHandler._prepare_request = _prepare_raw


class TextOrientation(ls.LitAPI):
    def setup(self, device):
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("THREADS", "2"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["MUON_PEER_MODEL"], options, providers=["CPUExecutionProvider"])

    def decode_request(self, request):
        img = Image.open(io.BytesIO(request)).convert("RGB")
        w, h = img.size
        rw = max(1, min(WIDTH, math.ceil(HEIGHT * w / h)))
        resized = np.asarray(img.resize((rw, HEIGHT), Image.BILINEAR), dtype=np.float32)[:, :, ::-1]  # BGR
        out = np.zeros((3, HEIGHT, WIDTH), dtype=np.float32)
        out[:, :, :rw] = resized.transpose(2, 0, 1) * np.float32(2 / 255) - np.float32(1)
        return out

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, x):
        return self.session.run(None, {"x": x if x.ndim == 4 else x[None]})[0]

    def unbatch(self, output):
        return list(output)

    def encode_response(self, row):
        row = row.reshape(-1)
        order = np.argsort(-row, kind="stable")
        return {"model": NAME, "predictions": [{"label": LABELS[i], "score": float(row[i])} for i in order]}


if __name__ == "__main__":
    api = TextOrientation(max_batch_size=int(os.environ.get("MAX_BATCH", "32")), batch_timeout=0.0)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "3300")),
        log_level="warning",
        generate_client_file=False,
    )
