"""KServe peer for bench/lone-request.ts: the PaddleOCR text-orientation classifier (text-orientation-fp32) served by
KServe's Python model server (kserve==0.21.0) on onnxruntime, the way a KServe user writes a custom predictor.

POST the raw image bytes (content-type image/png) to /v1/models/text-orientation-fp32:predict; the answer is
{"model", "predictions": [{"label", "score"}, ...]} sorted by score, as Muon Serve's. Preprocessing is what
models/text-orientation-fp32/manifest.json describes (BGR, height 48, width min(192, ceil(48 w / h)), bilinear,
(x / 255 - 0.5) / 0.5, zero padding to 192), with PIL.

Environment: MUON_PEER_MODEL (the .onnx file, required), THREADS (onnxruntime intra-op threads, default 2),
PORT (default 3200). KServe binds 0.0.0.0; this script makes its uvicorn listen on 127.0.0.1 only.

Run: /tmp/muon-kserve-venv/bin/python bench/peer/kserve_service.py
"""

import io
import math
import os
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from PIL import Image

PORT = int(os.environ.get("PORT", "3200"))
sys.argv = [sys.argv[0], f"--http_port={PORT}", "--workers=1", "--enable_latency_logging=False"]  # parsed at import
os.environ.setdefault("KSERVE_LOGLEVEL", "WARNING")  # no log line per request (Muon runs at warn in the bench too)

import kserve  # noqa: E402


class _LocalConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = _LocalConfig  # kserve's REST server builds its uvicorn.Config with host 0.0.0.0

NAME = "text-orientation-fp32"
LABELS = ["0", "180"]
HEIGHT, WIDTH = 48, 192


class TextOrientation(kserve.Model):
    def __init__(self) -> None:
        super().__init__(NAME)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("THREADS", "2"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["MUON_PEER_MODEL"], options, providers=["CPUExecutionProvider"])
        self.ready = True

    def preprocess(self, payload, headers=None):
        img = Image.open(io.BytesIO(payload)).convert("RGB")
        w, h = img.size
        rw = max(1, min(WIDTH, math.ceil(HEIGHT * w / h)))
        resized = np.asarray(img.resize((rw, HEIGHT), Image.BILINEAR), dtype=np.float32)[:, :, ::-1]  # BGR
        out = np.zeros((1, 3, HEIGHT, WIDTH), dtype=np.float32)
        out[0, :, :, :rw] = resized.transpose(2, 0, 1) * np.float32(2 / 255) - np.float32(1)
        return out

    def predict(self, x, headers=None):
        row = self.session.run(None, {"x": x})[0].reshape(-1)
        order = np.argsort(-row, kind="stable")
        return {"model": NAME, "predictions": [{"label": LABELS[i], "score": float(row[i])} for i in order]}


if __name__ == "__main__":
    kserve.ModelServer(enable_grpc=False).start([TextOrientation()])
