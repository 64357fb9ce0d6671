#!/usr/bin/env bash
# Regenerates the speech fixtures of test/fixtures/audio/ (voice-activity tests).
# Needs espeak-ng and sox (Debian: apt-get install -y espeak-ng sox). The speech is espeak-ng's synthesis of a
# sentence written here, padded with 1 s of digital silence on each side, so the spoken part is known to the sample.
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/test/fixtures/audio"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

espeak-ng -v en-us -s 150 -w "$tmp/raw.wav" "Hello, this is a short test of voice activity."
# 16 kHz mono 16-bit, 1 s of silence before and after
sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$tmp/speech16.wav"
sox "$tmp/speech16.wav" "$out/speech-16k-mono.wav" pad 1 1
# 44.1 kHz stereo 16-bit, same padding (both channels carry the speech)
sox "$tmp/raw.wav" -r 44100 -c 2 -b 16 "$tmp/speech44.wav"
sox "$tmp/speech44.wav" "$out/speech-44k-stereo.wav" pad 1 1
# 2 s of digital silence, 16 kHz mono 16-bit
sox -n -r 16000 -c 1 -b 16 "$out/silence-16k.wav" trim 0 2
for f in "$out"/*.wav; do
  echo "$(basename "$f"): $(soxi -D "$f") s, $(soxi -r "$f") Hz, $(soxi -c "$f") ch, $(soxi -e "$f")"
done
