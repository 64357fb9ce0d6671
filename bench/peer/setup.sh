#!/usr/bin/env bash
# Creates the Python virtualenv for the BentoML peer of bench/peer.ts, outside the repository by default.
#   bash bench/peer/setup.sh            # -> /tmp/muon-peer-venv
#   MUON_PEER_VENV=/some/dir bash bench/peer/setup.sh
# Versions are pinned so two result files compare like with like; bench/results/peer.json records what ran.
set -euo pipefail

VENV="${MUON_PEER_VENV:-/tmp/muon-peer-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# uvloop and httptools are what `uvicorn[standard]` adds: BentoML's uvicorn picks them up when present, the
# fastest HTTP stack the peer can have (without them it falls back to asyncio + h11).
"$VENV/bin/python" -m pip install --quiet \
  bentoml==1.4.40 \
  onnxruntime==1.32.0 \
  numpy==2.4.6 \
  pillow==13.0.0 \
  opencv-python-headless==5.0.0.93 \
  uvloop==0.23.0 \
  httptools==0.9.0

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for p in ["bentoml", "onnxruntime", "numpy", "pillow", "opencv-python-headless", "uvicorn", "uvloop", "httptools", "starlette"]:
    try:
        print(f"{p}=={md.version(p)}")
    except md.PackageNotFoundError:
        print(f"{p}: not installed")
PY
echo "peer virtualenv ready: $VENV"
