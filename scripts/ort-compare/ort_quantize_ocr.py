"""Quantizes the PP-OCRv4 recognizer or detector with onnxruntime's own Python tooling, at the settings its
documentation recommends for CNNs, for a side-by-side check against muon-compress (run-ocr.sh drives it).

Usage: python ort_quantize_ocr.py <model.onnx> <tensor folder of .npy> <out folder> <variant>...

Variants (each writes <out>/<variant>.onnx; unknown names are an error):
  static-u8-minmax      quantize_static: QDQ, per-channel, activations QUInt8, weights QInt8, MinMax
  static-s8-minmax      the same with QInt8 activations
  static-u8-percentile  QUInt8 activations, Percentile calibration (ORT's default 99.999)
  static-u8-entropy     QUInt8 activations, Entropy calibration
  static-u8-percentile-backbone  Percentile, with the nodes muon-compress keeps in float (--exclude-from
                        p2o.Conv.34) passed as nodes_to_exclude: the same split as our served recognizer
  dynamic               quantize_dynamic, ORT's default op list, QInt8 weights
  dynamic-u8w           the same with QUInt8 weights (with QInt8 weights the recognizer's Conv -> ConvInteger
                        outputs come out all blank, in ORT's Python runtime as in ours)

The source (opset 9 recognizer, opset 11 detector) is first converted to opset 13 with onnx.version_converter:
per-channel Q/DQ needs DequantizeLinear's `axis` (see ort_quantize.py), then `quant_pre_process` (symbolic shape
inference + ORT basic optimizations + ONNX shape inference). The calibration inputs have different shapes (line
widths, page sizes), so every method collects one tensor at a time (`CalibStridedMinMax` = 1: the histogram
methods would otherwise keep every activation of every input in memory, and stack them into one array).
Writes <out>/ort-info.json: versions, settings, seconds, and which variants were produced (or why not).
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
    """Feeds each .npy file (name order, the order muon-compress reads the images) as input `name`."""

    def __init__(self, folder: str, name: str):
        self.files = sorted(glob.glob(os.path.join(folder, "*.npy")))
        if not self.files:
            raise SystemExit(f"{folder}: no .npy files")
        self.name = name
        self.set_range(0, len(self.files))

    def __len__(self):
        return len(self.files)

    def set_range(self, start_index: int, end_index: int):
        self.it = iter(self.files[start_index:end_index])

    def get_next(self):
        f = next(self.it, None)
        if f is None:
            return None
        a = np.load(f)
        assert a.dtype == np.float32, f"{f}: {a.dtype}"
        return {self.name: a}

    def rewind(self):
        self.set_range(0, len(self.files))


def nodes_from(model: onnx.ModelProto, first: str) -> list:
    """The node named `first` and every node after it in graph order (what muon-compress --exclude-from keeps in
    float)."""
    names = [n.name for n in model.graph.node]
    if first not in names:
        raise ValueError(f"no node named {first}")
    return names[names.index(first) :]


def main() -> None:
    model, tensors, out, *variants = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    input_name = onnx.load(model).graph.input[0].name
    reader = NpyReader(tensors, input_name)
    info = {
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "source": model,
        "calibrationFiles": len(reader),
        "calibrationShapes": sorted({"x".join(map(str, np.load(f, mmap_mode="r").shape)) for f in reader.files})[:8],
        "variants": {},
    }
    src = onnx.load(model)
    info["sourceOpset"] = next(o.version for o in src.opset_import if o.domain in ("", "ai.onnx"))
    up = os.path.join(out, "model-opset13.onnx")
    onnx.save(onnx.version_converter.convert_version(src, 13), up)
    pre = os.path.join(out, "preprocessed.onnx")
    t = time.time()
    try:
        quant_pre_process(up, pre, skip_symbolic_shape=False)
        info["preprocess"] = {"symbolicShapeInference": True}
    except Exception as e:  # p2o's dynamic dims can defeat symbolic shape inference: ORT's documented fallback
        traceback.print_exc()
        quant_pre_process(up, pre, skip_symbolic_shape=True)
        info["preprocess"] = {"symbolicShapeInference": False, "error": f"{type(e).__name__}: {e}"[:300]}
    finally:
        # the failed symbolic shape inference leaves its temporary model in the working directory
        if os.path.exists("sym_shape_infer_temp.onnx"):
            os.remove("sym_shape_infer_temp.onnx")
    info["preprocess"]["seconds"] = round(time.time() - t, 2)

    def static(key, activation, method, exclude=None):
        settings = {
            "quant_format": "QDQ",
            "per_channel": True,
            "activation_type": activation.name,
            "weight_type": "QInt8",
            "calibrate_method": method.name,
            "extra_options": {"CalibStridedMinMax": 1},
            "op_types_to_quantize": "default (all ops ORT can quantize)",
        }
        if exclude:
            settings["nodes_to_exclude"] = f"{len(exclude)} nodes from {exclude[0]} on"
        fn = lambda: quantize_static(  # noqa: E731
            pre,
            os.path.join(out, f"{key}.onnx"),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=exclude or [],
            extra_options={"CalibStridedMinMax": 1},
        )
        return fn, settings

    def backbone():
        return static(
            "static-u8-percentile-backbone",
            QuantType.QUInt8,
            CalibrationMethod.Percentile,
            exclude=nodes_from(onnx.load(pre), "p2o.Conv.34"),
        )

    table = {
        "static-u8-minmax": lambda: static("static-u8-minmax", QuantType.QUInt8, CalibrationMethod.MinMax),
        "static-s8-minmax": lambda: static("static-s8-minmax", QuantType.QInt8, CalibrationMethod.MinMax),
        "static-u8-percentile": lambda: static("static-u8-percentile", QuantType.QUInt8, CalibrationMethod.Percentile),
        "static-u8-entropy": lambda: static("static-u8-entropy", QuantType.QUInt8, CalibrationMethod.Entropy),
        "static-u8-percentile-backbone": backbone,
        "dynamic": lambda: (
            lambda: quantize_dynamic(pre, os.path.join(out, "dynamic.onnx"), weight_type=QuantType.QInt8),
            {"weight_type": "QInt8", "per_channel": False, "op_types_to_quantize": "default (Conv, MatMul, ...)"},
        ),
        "dynamic-u8w": lambda: (
            lambda: quantize_dynamic(pre, os.path.join(out, "dynamic-u8w.onnx"), weight_type=QuantType.QUInt8),
            {"weight_type": "QUInt8", "per_channel": False, "op_types_to_quantize": "default (Conv, MatMul, ...)"},
        ),
    }
    for key in variants:
        if key not in table:
            raise SystemExit(f"unknown variant {key} (known: {', '.join(table)})")
        t0 = time.time()
        settings = {}
        try:
            reader.rewind()
            fn, settings = table[key]()
            fn()
            onnxruntime.InferenceSession(os.path.join(out, f"{key}.onnx"), providers=["CPUExecutionProvider"])
            info["variants"][key] = {"ok": True, "seconds": round(time.time() - t0, 1), "settings": settings}
        except Exception as e:  # report, keep going
            traceback.print_exc()
            info["variants"][key] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500], "settings": settings}
        print(f"{key}: {info['variants'][key].get('seconds', 'failed')} s", flush=True)
        with open(os.path.join(out, "ort-info.json"), "w") as f:
            json.dump(info, f, indent=2)
    print(json.dumps({k: v["ok"] for k, v in info["variants"].items()}))


if __name__ == "__main__":
    main()
