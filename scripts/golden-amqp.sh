#!/bin/bash
# AMQP 0-9-1 golden data from tshark, one row per packet carrying AMQP frames, for the
# dissectors' amqp tests.
# usage: scripts/golden-amqp.sh                  (every capture below)
#        scripts/golden-amqp.sh CAPTURE [DECODE-AS...]
# Writes fixtures/golden/<capture>/amqp.psv. tshark decodes port 5672 as AMQP by default (and
# tells 0-9-1 from 0-10 and 1.0 by the protocol header, or by the frames when the connection
# was joined mid-stream), so the shared capture needs no decode-as. A packet may carry several
# frames: amqp.type / amqp.channel / amqp.length have one value per frame, method class/id
# one per method frame, the arguments one per method frame that has them, comma-separated.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CAPS=$ROOT/fixtures/captures
GOLD=$ROOT/fixtures/golden

one() {
  local cap=$1; shift
  local args=()
  for d in "$@"; do args+=(-d "$d"); done
  mkdir -p "$GOLD/$cap"
  tshark -n -2 -r "$CAPS/$cap" "${args[@]}" -Y amqp -T fields -E header=y -E separator='|' -E occurrence=a -E aggregator=, \
    -e frame.number -e frame.time_epoch -e tcp.stream -e tcp.srcport \
    -e amqp.type -e amqp.channel -e amqp.length -e amqp.method.class -e amqp.method.method \
    -e amqp.method.arguments.exchange -e amqp.method.arguments.routing_key -e amqp.method.arguments.queue \
    -e amqp.method.arguments.reply_code -e amqp.method.arguments.reply_text \
    -e amqp.header.class -e amqp.header.body-size 2>/dev/null > "$GOLD/$cap/amqp.psv"
  echo "$cap: $(($(wc -l < "$GOLD/$cap/amqp.psv") - 1)) rows"
}

if [ $# -gt 0 ]; then one "$@"; exit; fi
one ndpi/amqp.pcap
