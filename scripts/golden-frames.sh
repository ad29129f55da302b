#!/usr/bin/env bash
# Per-frame golden files for export tests: tshark's timestamp, lengths, MD5 of the captured bytes
# and conversation of every frame, so an exported file can be checked byte for byte against the
# source without trusting our own reader. Needs tshark; tests never run this.
# usage: scripts/golden-frames.sh capture...   (paths relative to fixtures/captures)
set -euo pipefail
cd "$(dirname "$0")/.."
for c in "$@"; do
  out=fixtures/golden/$c
  mkdir -p "$out"
  {
    printf 'frame\ttime_epoch\tlen\tcap_len\tmd5\ttcp_stream\tudp_stream\n'
    tshark -n -r "fixtures/captures/$c" -o frame.generate_md5_hash:TRUE -T fields -E separator=/t \
      -e frame.number -e frame.time_epoch -e frame.len -e frame.cap_len -e frame.md5_hash -e tcp.stream -e udp.stream 2>/dev/null
  } > "$out/frames.tsv"
done
