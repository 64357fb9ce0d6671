#!/usr/bin/env bash
# RapidOCR on the quality bench's data, for bench/quality.ts to score beside the server (dev tooling only: needs
# python3 with venv and PyPI the first time). Usage: scripts/ocr-reference/run.sh [split] [max-pages]
# Env: RAPIDOCR_VENV (default ${TMPDIR:-/tmp}/muon-rapidocr-venv), QUALITY_DATA (default bench/quality/data)
set -euo pipefail
cd "$(dirname "$0")/../.."
SPLIT=${1:-evaluation}
VENV=${RAPIDOCR_VENV:-${TMPDIR:-/tmp}/muon-rapidocr-venv}
DATA=${QUALITY_DATA:-bench/quality/data}
if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c 'import rapidocr_onnxruntime' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check rapidocr_onnxruntime==1.4.4
fi
[[ -f "$DATA/$SPLIT/pages.json" ]] || npx tsx bench/quality/generate.ts --out "$DATA"
"$VENV/bin/python" scripts/ocr-reference/rapidocr_eval.py "$DATA" "$SPLIT" "bench/results/quality-rapidocr-$SPLIT.json" ${2:-}
echo "wrote bench/results/quality-rapidocr-$SPLIT.json"
