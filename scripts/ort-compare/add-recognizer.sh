#!/usr/bin/env bash
# Adds a recognizer model to a copy of models/ for bench/quality.ts --repository: <repo>/rec-<name> (the served
# text-recognition manifest with this model.onnx) and <repo>/ocr-<name> (the served ocr with it as its recognizer).
# Both wait up to 10 minutes (a slow build on a loaded machine must not fail the bench by deadline).
# Usage: bash scripts/ort-compare/add-recognizer.sh <repo> <name> <model.onnx>
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$1 name=$2 model=$3
mkdir -p "$repo/rec-$name" "$repo/ocr-$name"
cp "$model" "$repo/rec-$name/model.onnx"
cp models/ocr/model.onnx "$repo/ocr-$name/"
node -e '
const fs = require("fs"), crypto = require("crypto");
const [repo, name] = process.argv.slice(1);
const wait = (m) => ({ ...m, batching: { ...m.batching, defaultTimeoutMs: 600000, maxTimeoutMs: 600000 } });
const rec = wait(JSON.parse(fs.readFileSync("models/text-recognition/manifest.json", "utf8")));
delete rec.compression;
const bytes = fs.readFileSync(`${repo}/rec-${name}/model.onnx`);
rec.model = { path: "model.onnx", sha256: crypto.createHash("sha256").update(bytes).digest("hex") };
fs.writeFileSync(`${repo}/rec-${name}/manifest.json`, JSON.stringify(rec, null, 2));
const ocr = wait(JSON.parse(fs.readFileSync("models/ocr/manifest.json", "utf8")));
ocr.stages.recognizer = `rec-${name}`;
fs.writeFileSync(`${repo}/ocr-${name}/manifest.json`, JSON.stringify(ocr, null, 2));
' "$repo" "$name"
