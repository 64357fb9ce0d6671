#!/usr/bin/env bash
# Regenerate src/grpc/gen/*_pb.ts from the vendored Triton schema in src/grpc/proto/.
#
# Usage:
#   scripts/gen-triton-proto.sh                  # regenerate from the committed .proto files
#   scripts/gen-triton-proto.sh --fetch 2.73.0   # first rewrite the .proto files from the PyPI wheel
#                                                # tritonclient[grpc] of that version, then regenerate
#
# The wheel ships no .proto files, only grpc_service_pb2.py / model_config_pb2.py holding the serialized
# descriptors; scripts/tritonclient/descriptor_to_proto.py prints them back as .proto source (PyPI is reachable
# from our build environments while GitHub may not be).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
proto_dir="$repo_root/src/grpc/proto"

if [[ "${1:-}" == "--fetch" ]]; then
  version="${2:?usage: $0 --fetch <tritonclient-version>}"
  venv="$(mktemp -d)"
  trap 'rm -rf "$venv"' EXIT
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "tritonclient[grpc]==$version"
  "$venv/bin/python" "$repo_root/scripts/tritonclient/descriptor_to_proto.py" "$proto_dir"
  echo "Remember to update the version recorded in src/grpc/proto/README.md"
fi

cd "$proto_dir"
npx --no-install buf generate --template buf.gen.yaml .
echo "generated src/grpc/gen/"
