#!/bin/bash
# Kafka golden data from tshark, one row per Kafka PDU (tshark shows one per frame here), for
# the dissectors' kafka tests.
# usage: scripts/golden-kafka.sh                 (every capture below)
#        scripts/golden-kafka.sh CAPTURE [DECODE-AS...]
# Writes fixtures/golden/<capture>/kafka.psv. tshark decodes port 9092 as Kafka by default, so
# the shared capture needs no decode-as. Columns: request_key / response_key and
# request.version / response.version say which side a row is; request_frame / response_frame
# are tshark's pairing. Fields with several values (topics, partitions, errors) are
# comma-separated, in tshark's order.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CAPS=$ROOT/fixtures/captures
GOLD=$ROOT/fixtures/golden

one() {
  local cap=$1; shift
  local args=()
  for d in "$@"; do args+=(-d "$d"); done
  mkdir -p "$GOLD/$cap"
  tshark -n -2 -r "$CAPS/$cap" "${args[@]}" -Y kafka -T fields -E header=y -E separator='|' -E occurrence=a -E aggregator=, \
    -e frame.number -e frame.time_epoch -e tcp.stream -e tcp.srcport -e kafka.len \
    -e kafka.request_key -e kafka.response_key -e kafka.request.version -e kafka.response.version \
    -e kafka.correlation_id -e kafka.client_id -e kafka.topic_name -e kafka.partition_id -e kafka.error \
    -e kafka.request_frame -e kafka.response_frame 2>/dev/null > "$GOLD/$cap/kafka.psv"
  echo "$cap: $(($(wc -l < "$GOLD/$cap/kafka.psv") - 1)) rows"
}

if [ $# -gt 0 ]; then one "$@"; exit; fi
one ndpi/kafka.pcapng
