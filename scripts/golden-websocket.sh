#!/usr/bin/env bash
# Writes tshark's WebSocket frame fields of the WebSocket captures as golden files for
# packages/dissectors/test/websocket.test.ts. Tests never run this; it needs tshark (4.0).
#
# usage: scripts/golden-websocket.sh
#
# zeek/http_docker-http-upgrade.pcap is not here: its upgrade is Docker's `Upgrade: tcp` (a raw
# attach stream), not WebSocket; tshark shows no WebSocket frame in it.
#
# Output: fixtures/golden/<capture>/websocket.psv, '|'-separated with a header line, one row
# per frame tshark dissects as WebSocket (several frames in one TCP segment: values joined
# with ';'):
#   frame.number, frame.time_epoch, tcp.stream, tcp.srcport, tcp.dstport
#   websocket.fin, websocket.rsv, websocket.opcode, websocket.mask
#   websocket.payload_length, websocket.payload_length_ext_16, websocket.payload_length_ext_64
#   websocket.payload.text              the unmasked text of text frames
#   websocket.payload.close.status_code, websocket.payload.close.reason
# The script checks that no value holds a stray separator.
set -euo pipefail
cd "$(dirname "$0")/.."
FIELDS=(frame.number frame.time_epoch tcp.stream tcp.srcport tcp.dstport websocket.fin websocket.rsv websocket.opcode websocket.mask
  websocket.payload_length websocket.payload_length_ext_16 websocket.payload_length_ext_64 websocket.payload.text
  websocket.payload.close.status_code websocket.payload.close.reason)
args=()
for f in "${FIELDS[@]}"; do args+=(-e "$f"); done
while read -r cap; do
  out=fixtures/golden/$cap
  mkdir -p "$out"
  tshark -n -2 -r "fixtures/captures/$cap" -Y websocket -T fields -E header=y -E separator='|' -E aggregator=';' "${args[@]}" >"$out/websocket.psv"
  if awk -F'|' -v n="${#FIELDS[@]}" 'NF != n { bad = 1 } END { exit !bad }' "$out/websocket.psv"; then
    echo "$cap: a value holds the separator" >&2
    exit 1
  fi
  # Frames with one value per field only: a ';' would make the text ambiguous.
  if awk -F'|' 'NR > 1 && $8 ~ /;/ { bad = 1 } END { exit !bad }' "$out/websocket.psv"; then
    echo "$cap: several frames in one segment; extend the test's parser" >&2
    exit 1
  fi
  echo "$out/websocket.psv: $(($(wc -l <"$out/websocket.psv") - 1)) frames"
done <<'LIST'
suricata-verify/basic_websockets.pcap
LIST
