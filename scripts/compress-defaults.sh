#!/usr/bin/env bash
# Produces the compressed default models from their fp32 originals (models/<name>-fp32, read from npm packages),
# with calibration and evaluation inputs: the text-line crops of a photographed book page (test/fixtures/text-lines,
# made by scripts/make-fixtures.sh) and the quality bench's calibration pages (bench/quality/generate.ts). Each run
# of muon-compress applies the deploy gate.
#
#   bash scripts/compress-defaults.sh           rewrite models/<name> (model.onnx, manifest.json, report.*), then
#                                               gate them against their fp32 originals by task metric
#   bash scripts/compress-defaults.sh --check   rebuild into a temporary folder and check that every model.onnx is
#                                               byte for byte the committed one (manifests differ only in the
#                                               measured latencies, the creation time and the objective: --check
#                                               always compresses for size)
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[[ "${1:-}" == "--check" ]] && check=true
out=models
if $check; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
compress() { # name, then muon-compress options
  local name=$1
  shift
  # --check compares bytes: whether a model measures faster on this machine today must not decide that
  if $check; then set -- "$@" --objective size; fi
  npx tsx src/quantize/cli.ts "models/$name-fp32" --out "$out/$name" --force "$@"
}

# PP-OCR text-direction classifier (MobileNetV3-small): int8 QDQ, fused into QLinearConv
# (for its size: int8 runs this small depthwise-heavy model slower than fp32 on this CPU, see docs/compression.md)
compress text-orientation --mode int8-static --calibration test/fixtures/text-lines --max-fidelity-loss 0.01 \
  --objective size
# PP-OCRv4 recognizer (SVTR-LCNet): 4-bit block-wise weights for its MatMuls, computed in float. Not int8-dynamic:
# DynamicQuantizeLinear takes one scale over the whole batch, so a line's text would depend on the lines batched
# with it; static int8 lost too many characters (see README)
compress text-recognition --mode int4-weight --eval test/fixtures/text-lines --max-fidelity-loss 0.01 \
  --objective size # (for its size: as fast as fp32, not faster)
# Silero VAD v6 is served uncompressed: its int8 build (pin sr=16000, STFT conv float, percentile ranges, as below)
# passed this gate but lost 6 points of segment F1 on the quality bench's evaluation speech (docs/quality.md).
#   muon-compress models/voice-activity-fp32 --mode int8-static --fix-input sr=16000 --calibration test/fixtures/audio \
#     --calibration-method percentile --exclude _if_then_branch_Conv_token_7 --max-fidelity-loss 0.05

# PP-OCRv4 detector (the ocr model): int8 QDQ, calibrated on the quality bench's 13 calibration pages (drawn by
# bench/quality/generate.ts, which is deterministic; calibrated on the book page and the line crops instead, it
# read the evaluation pages with 6 points less line recall than fp32); gate on the text mask DB post-processing
# reads (map > 0.3)
[[ -f bench/quality/data/calibration/pages.json ]] || npx tsx bench/quality/generate.ts
pages=$(mktemp -d)
cp bench/quality/data/calibration/pages/* "$pages"/
compress ocr --mode int8-static --calibration "$pages" --max-fidelity-loss 0.03
rm -rf "$pages"
# ocr-fp32's stages are the fp32 models; the served ocr calls the compressed orientation model and the fp32
# recognizer (with the int4 one it read 1.5 points fewer lines of the quality bench's evaluation pages)
node -e '
const f = process.argv[1], m = JSON.parse(require("fs").readFileSync(f, "utf8"));
Object.assign(m.stages, { recognizer: "text-recognition-fp32", orientation: "text-orientation" });
m.description = m.description
  .replace("text-orientation-fp32", "text-orientation")
  .replace(": the uncompressed pipeline, to compare `ocr` with", " (the int4 text-recognition lost 1.5 points of line recall on the quality bench pages)");
require("fs").writeFileSync(f, JSON.stringify(m, null, 2) + "\n");
' "$out/ocr/manifest.json"

if ! $check; then
  npx prettier --log-level warn --write models/{text-orientation,text-recognition,ocr}/{manifest,report}.json
  # the gate by task metric: each served default within 1 point of its fp32 original on the quality bench's
  # evaluation split (about 5 minutes; exit 1 names the metric that failed)
  npx tsx bench/quality.ts --out "$(mktemp -d)/quality" | grep '^gate'
  exit 0
fi
status=0
for name in text-orientation text-recognition ocr; do
  if cmp -s "$out/$name/model.onnx" "models/$name/model.onnx"; then
    echo "$name: model.onnx reproduced byte for byte"
  else
    echo "$name: model.onnx differs from the committed one" >&2
    status=1
  fi
done
exit $status
