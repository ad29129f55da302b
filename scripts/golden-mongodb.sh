#!/usr/bin/env bash
# Writes tshark's MongoDB wire-protocol fields of the MongoDB captures as golden files for
# packages/dissectors/test/mongodb.test.ts. Tests never run this; it needs tshark (4.0).
#
# usage: scripts/golden-mongodb.sh
#
# tshark 4.0 registers 27017 as a TLS port for mongo (mongo over TLS), so cleartext MongoDB on
# 27017 needs -d tcp.port==27017,mongo; the capture's fifth connection uses port 30000.
#
# Output: fixtures/golden/<capture>/mongodb.psv, '|'-separated with a header line, one row per
# frame tshark dissects as MongoDB (several values of a field joined with ';'):
#   frame.number, frame.time_epoch, tcp.stream, tcp.srcport, tcp.dstport
#   mongo.message_length, mongo.request_id, mongo.response_to, mongo.opcode
#   mongo.full_collection_name (legacy ops), mongo.database, mongo.commandname,
#   mongo.msg.flags, mongo.msg.sections.section.kind, mongo.number_returned,
#   mongo.compression.compressor, mongo.element.name (every element name, in document order)
set -euo pipefail
cd "$(dirname "$0")/.."
FIELDS=(frame.number frame.time_epoch tcp.stream tcp.srcport tcp.dstport mongo.message_length mongo.request_id mongo.response_to mongo.opcode
  mongo.full_collection_name mongo.database mongo.commandname mongo.msg.flags mongo.msg.sections.section.kind mongo.number_returned
  mongo.compression.compressor mongo.element.name)
args=()
for f in "${FIELDS[@]}"; do args+=(-e "$f"); done
while read -r cap extra; do
  out=fixtures/golden/$cap
  mkdir -p "$out"
  # shellcheck disable=SC2086
  tshark -n -2 -r "fixtures/captures/$cap" $extra -Y mongo -T fields -E header=y -E separator='|' -E aggregator=';' "${args[@]}" >"$out/mongodb.psv"
  if awk -F'|' -v n="${#FIELDS[@]}" 'NF != n { bad = 1 } END { exit !bad }' "$out/mongodb.psv"; then
    echo "$cap: a value holds the separator" >&2
    exit 1
  fi
  echo "$out/mongodb.psv: $(($(wc -l <"$out/mongodb.psv") - 1)) frames"
done <<'LIST'
ndpi/mongodb.pcap -d tcp.port==27017,mongo -d tcp.port==30000,mongo
LIST
