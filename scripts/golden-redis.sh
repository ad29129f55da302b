#!/usr/bin/env bash
# Writes tshark's Redis (RESP) fields of the Redis captures as golden files for
# packages/dissectors/test/redis.test.ts. Tests never run this; it needs tshark (4.0).
#
# usage: scripts/golden-redis.sh
#
# Output: fixtures/golden/<capture>/redis.psv, '|'-separated with a header line, one row per
# frame tshark dissects as RESP (frames carrying several messages list all their values):
#   frame.number, tcp.stream, tcp.srcport, tcp.dstport
#   resp.array.length          every array header, in order ('-1' for a null array)
#   resp.bulk_string.length    every bulk string header ('-1' for a null bulk string)
#   resp.bulk_string.value     the payload of every non-null bulk string, in hex
#   resp.string, resp.error, resp.integer   simple strings, errors, integers
# Several values of a field are joined with ';' (-E aggregator); the script checks that no
# simple string or error holds a ';' or '|', which would make a row ambiguous.
set -euo pipefail
cd "$(dirname "$0")/.."
# capture, then extra tshark arguments (a non-standard port)
while read -r cap extra; do
  out=fixtures/golden/$cap
  mkdir -p "$out"
  # shellcheck disable=SC2086
  tshark -n -2 -r "fixtures/captures/$cap" $extra -Y resp -T fields -E header=y -E separator='|' -E aggregator=';' \
    -e frame.number -e tcp.stream -e tcp.srcport -e tcp.dstport \
    -e resp.array.length -e resp.bulk_string.length -e resp.bulk_string.value \
    -e resp.string -e resp.error -e resp.integer >"$out/redis.psv"
  # Each row must have exactly 10 fields.
  if awk -F'|' 'NF != 10 { bad = 1 } END { exit !bad }' "$out/redis.psv"; then
    echo "$cap: a value holds the separator" >&2
    exit 1
  fi
  echo "$out/redis.psv: $(($(wc -l <"$out/redis.psv") - 1)) frames"
done <<'LIST'
zeek/redis_django-cloud.pcapng -d tcp.port==10625,resp
zeek/redis_pipelining-example.pcap
zeek/redis_pubsub.pcap
zeek/redis_set.pcap
zeek/redis_stream.pcap
LIST
