"""Quantizes a model with onnxruntime's own Python tooling, for a side-by-side check against muon-compress.

Usage: python ort_quantize.py <model.onnx> <tensor folder of .npy> <out folder> [muon-compress int8-static model.onnx]

With the last argument, the initializers of both int8-static models are compared by name (weights, biases,
weight and activation scales and zero points) and the result is recorded in ort-info.json.

The source model (opset 9) is first converted to opset 13 with onnx.version_converter: per-channel
Q/DQ needs DequantizeLinear's `axis` (opset 13), and quantize_static on the opset-9 file upgrades it only to
opset 11 while still writing `axis`, which onnxruntime then refuses to load (checked and recorded below as
`ort-int8-static-as-is`).

Writes into <out folder>:
  model-opset13.onnx      the source converted to opset 13
  preprocessed.onnx       quant_pre_process (symbolic shape inference + ORT basic optimizations + ONNX shape inference)
  ort-int8-static.onnx    quantize_static: QDQ, per-channel, activations uint8, weights int8, MinMax
  ort-int8-dynamic.onnx   quantize_dynamic with ORT's default op list (weights int8)
  ort-int8-dynamic-matmul.onnx  quantize_dynamic restricted to MatMul/Gemm (what muon-compress int8-dynamic targets)
  ort-fp16.onnx           onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True), if installed
  ort-int8-static-as-is.onnx  quantize_static straight from the opset-9 source (only checked for loadability)
  ort-info.json           versions, settings, and which variants were produced (or why not)
"""

import glob
import json
import os
import sys
import time
import traceback

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process


class NpyReader(CalibrationDataReader):
    """Feeds each .npy file (name order, the same order muon-compress reads the images) as input `name`."""

    def __init__(self, folder: str, name: str):
        self.files = sorted(glob.glob(os.path.join(folder, "*.npy")))
        if not self.files:
            raise SystemExit(f"{folder}: no .npy files")
        self.name = name
        self.it = iter(self.files)

    def get_next(self):
        f = next(self.it, None)
        if f is None:
            return None
        a = np.load(f)
        assert a.dtype == np.float32, f"{f}: {a.dtype}"
        return {self.name: a}

    def rewind(self):
        self.it = iter(self.files)


def compare_initializers(ours_path: str, ort_path: str) -> dict:
    """Same-named initializers of two models: how many are bit-identical, and the ones that are not."""
    from onnx import numpy_helper

    a = {t.name: numpy_helper.to_array(t) for t in onnx.load(ours_path).graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in onnx.load(ort_path).graph.initializer}
    common = sorted(set(a) & set(b))
    differ = []
    for k in common:
        x, y = a[k], b[k]
        if x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y):
            continue
        entry = {"name": k, "ours": f"{x.dtype}{list(x.shape)}", "ort": f"{y.dtype}{list(y.shape)}"}
        if x.shape == y.shape:
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            entry.update(elementsDiffering=int((d > 0).sum()), elements=int(d.size), maxAbsDiff=float(d.max()))
            if x.dtype.kind == "f":  # distance in units in the last place of the ORT value
                entry["maxUlps"] = float((d / np.spacing(np.abs(y).astype(x.dtype))).max())
        differ.append(entry)
    floats = [d for d in differ if "maxUlps" in d]
    return {
        "summary": {
            "floatTensorsDiffering": len(floats),
            "floatMaxUlps": max((d["maxUlps"] for d in floats), default=0),
            "integerTensorsDiffering": len([d for d in differ if "maxUlps" not in d]),
        },
        "ours": len(a),
        "ort": len(b),
        "sameName": len(common),
        "identical": len(common) - len(differ),
        "different": differ,
        "onlyOurs": sorted(set(a) - set(b)),
        "onlyOrt": sorted(set(b) - set(a)),
    }


def main() -> None:
    model, tensors, out = sys.argv[1:4]
    ours = sys.argv[4] if len(sys.argv) > 4 else None
    os.makedirs(out, exist_ok=True)
    input_name = onnx.load(model).graph.input[0].name
    info = {
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "calibrationFiles": [os.path.basename(f) for f in NpyReader(tensors, input_name).files],
        "variants": {},
    }

    src = onnx.load(model)
    info["sourceOpset"] = next(o.version for o in src.opset_import if o.domain in ("", "ai.onnx"))
    up = os.path.join(out, "model-opset13.onnx")
    onnx.save(onnx.version_converter.convert_version(src, 13), up)
    pre = os.path.join(out, "preprocessed.onnx")
    t = time.time()
    quant_pre_process(up, pre, skip_symbolic_shape=False)
    info["preprocessSeconds"] = round(time.time() - t, 2)

    def attempt(key, fn, settings):
        t0 = time.time()
        try:
            fn()
            info["variants"][key] = {"ok": True, "seconds": round(time.time() - t0, 2), "settings": settings}
        except Exception as e:  # report, keep going
            traceback.print_exc()
            info["variants"][key] = {"ok": False, "error": f"{type(e).__name__}: {e}", "settings": settings}

    static_settings = {
        "quant_format": "QDQ",
        "per_channel": True,
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "calibrate_method": "MinMax",
        "op_types_to_quantize": "default (all ops ORT can quantize)",
    }
    attempt(
        "ort-int8-static",
        lambda: quantize_static(
            pre,
            os.path.join(out, "ort-int8-static.onnx"),
            NpyReader(tensors, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        ),
        static_settings,
    )
    attempt(
        "ort-int8-dynamic",
        lambda: quantize_dynamic(pre, os.path.join(out, "ort-int8-dynamic.onnx"), weight_type=QuantType.QInt8),
        {"weight_type": "QInt8", "per_channel": False, "op_types_to_quantize": "default (Conv, MatMul, Gemm, ...)"},
    )
    attempt(
        "ort-int8-dynamic-matmul",
        lambda: quantize_dynamic(
            pre,
            os.path.join(out, "ort-int8-dynamic-matmul.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        ),
        {"weight_type": "QInt8", "per_channel": False, "op_types_to_quantize": ["MatMul", "Gemm"]},
    )

    def fp16():
        from onnxconverter_common import float16  # optional dependency

        info["versions"]["onnxconverter_common"] = __import__("onnxconverter_common").__version__
        m = float16.convert_float_to_float16(onnx.load(pre), keep_io_types=True)
        onnx.save(m, os.path.join(out, "ort-fp16.onnx"))

    attempt("ort-fp16", fp16, {"keep_io_types": True, "source": "preprocessed.onnx (BatchNorm folded, like muon-compress)"})

    # The path a user following the docs without an opset upgrade takes: does onnxruntime load the result?
    def as_is():
        pre9 = os.path.join(out, "preprocessed-as-is.onnx")
        quant_pre_process(model, pre9, skip_symbolic_shape=False)
        dst = os.path.join(out, "ort-int8-static-as-is.onnx")
        quantize_static(
            pre9,
            dst,
            NpyReader(tensors, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        opset = next(o.version for o in onnx.load(dst).opset_import if o.domain in ("", "ai.onnx"))
        try:
            onnxruntime.InferenceSession(dst, providers=["CPUExecutionProvider"])
            info["asIsStatic"] = {"opset": opset, "loads": True}
        except Exception as e:
            info["asIsStatic"] = {"opset": opset, "loads": False, "error": str(e).splitlines()[0][:300]}

    attempt("ort-int8-static-as-is", as_is, dict(static_settings, source="opset-9 source, no opset upgrade"))

    if ours and info["variants"]["ort-int8-static"]["ok"]:
        info["initializerMatch"] = compare_initializers(ours, os.path.join(out, "ort-int8-static.onnx"))

    with open(os.path.join(out, "ort-info.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps({k: v["ok"] for k, v in info["variants"].items()}))


if __name__ == "__main__":
    main()
