#!/usr/bin/env bash
# make-fixtures.sh - regenerate test/fixtures/{photos,text-lines,bad}/ from real photos.
#
# Source: scikit-image's sample images (astronaut, coffee, chelsea, page), taken from
# Debian's `python3-skimage` package, which is downloaded with `apt-get download`
# (not installed) and unpacked into a temp dir that is removed on exit. The images
# are checked against scikit-image's own SHA-256 registry, so any package version that
# ships the same files (e.g. bookworm's 0.19.3-8) gives the same fixtures.
# Then runs scripts/make-fixtures.ts (sharp) to write the fixtures; see
# test/fixtures/README.md for what each file is.
#
# Usage:   bash scripts/make-fixtures.sh
#          SKIMAGE_DATA_DIR=/path/to/skimage/data bash scripts/make-fixtures.sh   # offline
# Needs:   apt-get + dpkg (Debian/Ubuntu), node_modules with sharp and tsx. As root,
#          apt may warn "Download is performed unsandboxed"; that is harmless.
#          If the package lists are missing, runs `apt-get update` (root only).
# Idempotent: deletes and rewrites test/fixtures/{photos,text-lines,bad}/ each run;
# test/fixtures/README.md is left alone. Optional check afterwards:
#          npx tsx scripts/check-orientation-fixtures.ts
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -n "${SKIMAGE_DATA_DIR:-}" ]]; then
  data="$SKIMAGE_DATA_DIR"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download python3-skimage); then
    if [[ "$(id -u)" -eq 0 ]]; then
      apt-get update
      (cd "$tmp" && apt-get download python3-skimage)
    else
      echo "make-fixtures: apt-get download failed; run 'sudo apt-get update' or set SKIMAGE_DATA_DIR" >&2
      exit 1
    fi
  fi
  deb="$(ls "$tmp"/python3-skimage_*.deb)"
  echo "make-fixtures: using python3-skimage $(dpkg-deb -f "$deb" Version)"
  dpkg -x "$deb" "$tmp/pkg"
  data="$(find "$tmp/pkg" -type f -path '*/skimage/data/page.png' -printf '%h\n' | head -n 1)"
  [[ -n "$data" ]] || { echo "make-fixtures: skimage/data not found in $deb" >&2; exit 1; }
fi

cd "$ROOT"
npx --no-install tsx scripts/make-fixtures.ts "$data"
