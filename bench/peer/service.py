"""BentoML peer for the Muon Serve benchmark (bench/peer.ts): the PaddleOCR text-orientation classifier
(text-orientation-fp32) behind BentoML's adaptive batching, on onnxruntime.

It takes the same request as Muon Serve: POST the raw image bytes (content-type image/png or image/jpeg) to
/predict, and answers {"model", "predictions": [{"label", "score"}, ...]} sorted by score.

Each request is decoded and preprocessed as soon as it arrives (in a worker thread, off the event loop), to a
[1, 3, 48, 192] float32 tensor; BentoML's dispatcher concatenates the queued tensors along axis 0 (batch_dim=0) into
one onnxruntime run of up to MAX_BATCH_SIZE rows, and splits the [B, 2] softmax back per request.

Configuration (environment):
  MUON_PEER_MODEL          path of ch_ppocr_mobile_v2.0_cls_infer.onnx (required)
  THREADS                  onnxruntime intra-op threads (default 2)
  MUON_PEER_MAX_LATENCY_MS BentoML max_latency_ms (default 1000)

Run: bentoml serve service:TextOrientation --working-dir bench/peer --host 127.0.0.1 --port 3100
"""

from __future__ import annotations

import json
import math
import os
import typing as t

import anyio.to_thread
import bentoml
import cv2
import numpy as np
import onnxruntime as ort
from _bentoml_sdk.io_models import IORootModel
from starlette.requests import Request
from starlette.responses import Response

MODEL_NAME = "text-orientation-fp32"
INPUT_NAME = "x"
OUTPUT_NAME = "softmax_0.tmp_0"
LABELS = ["0", "180"]
HEIGHT, WIDTH = 48, 192
MAX_BATCH_SIZE = 32
MAX_LATENCY_MS = int(os.environ.get("MUON_PEER_MAX_LATENCY_MS", "1000"))
THREADS = int(os.environ.get("THREADS", "2"))

# OpenCV's own thread pool would compete with onnxruntime's intra-op threads for the same cores; the server under
# comparison decodes and resizes on one thread per image too.
cv2.setNumThreads(1)


def preprocess(body: bytes) -> np.ndarray:
    """Image bytes to a [1, 3, 48, 192] tensor, as models/text-orientation-fp32/manifest.json describes:
    BGR, resized to height 48 keeping the aspect ratio (width min(192, ceil(48 w / h))) with OpenCV INTER_LINEAR,
    (x / 255 - 0.5) / 0.5, zero-padded on the right to width 192, NCHW."""
    img = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)  # BGR, EXIF orientation applied
    if img is None:
        raise ValueError("the body is not a PNG or JPEG image")
    h, w = img.shape[:2]
    rw = max(1, min(WIDTH, math.ceil(HEIGHT * w / h)))
    # resized in float so the result is not rounded back to 8 bits (Muon Serve samples and normalizes in one pass)
    resized = cv2.resize(img.astype(np.float32), (rw, HEIGHT), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((1, 3, HEIGHT, WIDTH), dtype=np.float32)
    out[0, :, :, :rw] = resized.transpose(2, 0, 1) * np.float32(2 / 255) - np.float32(1)
    return out


def answer(probs: np.ndarray) -> bytes:
    """One request's [1, 2] softmax row to the JSON answer, predictions sorted by score."""
    row = probs.reshape(-1)
    order = np.argsort(-row, kind="stable")
    predictions = [{"label": LABELS[i], "score": float(row[i])} for i in order]
    return json.dumps({"model": MODEL_NAME, "predictions": predictions}).encode()


class ImageBody(IORootModel[t.Any]):
    """The raw request body, decoded and preprocessed to one tensor row in a worker thread."""

    @classmethod
    async def from_http_request(cls, request: Request, serde: t.Any) -> "ImageBody":
        body = await request.body()
        return cls.model_construct(root=await anyio.to_thread.run_sync(preprocess, body))

    @classmethod
    def mime_type(cls) -> str:
        return "image/png"


ImageBody.__root_input__ = True  # the tensor is the method's single positional argument


class Predictions(IORootModel[t.Any]):
    """This request's slice of the batch output, as JSON."""

    @classmethod
    async def to_http_response(cls, obj: t.Any, serde: t.Any) -> Response:
        return Response(content=answer(np.asarray(obj)), media_type="application/json")

    @classmethod
    def mime_type(cls) -> str:
        return "application/json"


@bentoml.service(
    name="muon-peer-text-orientation",
    workers=1,
    resources={"cpu": str(THREADS)},
    traffic={"timeout": 60},
    # no per-request access log line: Muon Serve runs the bench with warn-level logs
    logging={"access": {"enabled": False}},
)
class TextOrientation:
    def __init__(self) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            os.environ["MUON_PEER_MODEL"], sess_options=opts, providers=["CPUExecutionProvider"]
        )
        # warm up every batch size's first run cost once, as Muon Serve does at load (MUON_WARMUP)
        for size in (1, MAX_BATCH_SIZE):
            self.session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((size, 3, HEIGHT, WIDTH), np.float32)})

    @bentoml.api(
        route="/predict",
        input_spec=ImageBody,
        output_spec=Predictions,
        batchable=True,
        batch_dim=0,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=MAX_LATENCY_MS,
    )
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """[B, 3, 48, 192] preprocessed rows, concatenated by BentoML's dispatcher, to [B, 2] probabilities."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
