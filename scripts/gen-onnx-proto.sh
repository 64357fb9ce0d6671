#!/usr/bin/env bash
# Regenerate src/onnx/proto/onnx_pb.ts from the vendored src/onnx/proto/onnx.proto.
#
# Usage:
#   scripts/gen-onnx-proto.sh                 # regenerate from the committed onnx.proto
#   scripts/gen-onnx-proto.sh --fetch 1.23.2  # first refresh onnx.proto from the PyPI
#                                             # `onnx` wheel of that version, then regenerate
#
# The schema comes from the official `onnx` Python wheel (it ships onnx/onnx.proto),
# because PyPI is reachable from our build environments while GitHub may not be.
# Code generation uses the local protoc-gen-es (node_modules/.bin, put on PATH by npx)
# with target=ts and import_extension=js so the output works under ESM + NodeNext.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$repo_root/src/onnx/proto"

if [[ "${1:-}" == "--fetch" ]]; then
  version="${2:?usage: $0 --fetch <onnx-version>}"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # Any platform wheel carries the same .proto; --no-deps keeps the download small.
  python3 -m pip download "onnx==$version" --no-deps --only-binary=:all: -d "$tmp" >/dev/null
  wheel="$(ls "$tmp"/onnx-*.whl | head -n 1)"
  unzip -p "$wheel" onnx/onnx.proto > "$proto_dir/onnx.proto"
  echo "onnx.proto refreshed from $(basename "$wheel")"
  echo "Remember to update the version recorded in src/onnx/proto/README.md"
fi

# Run from the proto directory: it is the buf module root (no buf.yaml needed), so
# onnx.proto maps to onnx_pb.ts right next to it. `npx` puts node_modules/.bin on
# PATH, so `local: protoc-gen-es` in buf.gen.yaml resolves to the project's pinned plugin.
cd "$proto_dir"
npx --no-install buf generate --template buf.gen.yaml .
echo "generated src/onnx/proto/onnx_pb.ts"
