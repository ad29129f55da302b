#!/usr/bin/env bash
# Writes tshark's reassembled TCP payload of every stream and direction of a capture as golden
# files for the reassembler test (packages/capture/test/reassembly.test.ts). Tests never run
# this; it needs tshark (apt-get install tshark), xxd and sha256sum.
#
# usage: scripts/golden-streams.sh [capture ...]   (paths relative to fixtures/captures;
#        default: the captures the reassembly test covers)
#
# Output: fixtures/golden/<capture>/streams/tcp_follow.csv, one row per stream and node:
#   stream    tcp.stream number (tshark numbers streams in the order they appear, as FlowTable
#             numbers flows, so the n-th TCP flow is stream n)
#   node      0 or 1 as `tshark -z follow,tcp,raw,N` prints them: node 0 sent the stream's first
#             packet; its bytes are the lines without a leading tab
#   endpoint  ip:port of that node (IPv6 without tshark's brackets)
#   bytes     payload bytes tshark delivered for that direction, gap markers excluded
#   sha256    SHA-256 of those bytes, in order
#   gaps      holes tshark reported, as offset+length separated by spaces; the offset counts the
#             delivered bytes before the hole. tshark marks a hole by inserting the text
#             "[N bytes missing in capture file]" and a NUL as a record of its own when the peer
#             acknowledges data beyond it; the marker is taken out of the bytes and the digest.
set -euo pipefail
cd "$(dirname "$0")/.."
captures=("$@")
if [ ${#captures[@]} -eq 0 ]; then
  captures=(
    zeek/http_get.pcap
    zeek/http_pipelined-requests.pcap
    zeek/http_1000-requests-one-dropped-response.pcap.gz
    ndpi/http_ipv6.pcap
    ndpi/pgsql.pcap
    grpc-go-book/grpc_Unary.pcapng
    zeek/tcp_retransmit-fast009.pcap
    suricata-verify/http-gap-simple.pcap
  )
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Hex of the marker text around the number: "[" and " bytes missing in capture file]" NUL.
marker_tail=$(printf ' bytes missing in capture file]\0' | xxd -p | tr -d '\n')
for c in "${captures[@]}"; do
  cap=fixtures/captures/$c
  out=fixtures/golden/$c/streams
  mkdir -p "$out"
  rm -f "$tmp"/*
  mapfile -t ids < <(tshark -n -r "$cap" -Y tcp -T fields -e tcp.stream 2>/dev/null | sort -un)
  # One tshark pass per batch of streams: each -z follow is a tap of its own.
  for ((i = 0; i < ${#ids[@]}; i += 200)); do
    args=()
    for s in "${ids[@]:i:200}"; do args+=(-z "follow,tcp,raw,$s"); done
    tshark -n -r "$cap" -q "${args[@]}" 2>/dev/null |
      awk -v dir="$tmp" -v tail="$marker_tail" '
        # Decodes "[<digits>" + tail as hex into the number of missing bytes, or -1.
        function gap_len(h,   mid, n, k, d) {
          if (substr(h, 1, 2) != "5b" || length(h) <= 2 + length(tail)) return -1
          if (substr(h, length(h) - length(tail) + 1) != tail) return -1
          mid = substr(h, 3, length(h) - 2 - length(tail))
          if (length(mid) % 2 != 0) return -1
          n = 0
          for (k = 1; k <= length(mid); k += 2) {
            d = substr(mid, k, 2)
            if (d !~ /^3[0-9]$/) return -1
            n = n * 10 + substr(d, 2, 1)
          }
          return n
        }
        /^Filter: tcp.stream eq / { s = $4; got[0] = 0; got[1] = 0; gaps[0] = ""; gaps[1] = ""; next }
        /^Node [01]: / { node = substr($2, 1, 1); ep = $3; gsub(/[][]/, "", ep); print ep > (dir "/" s "." node ".ep"); printf "" > (dir "/" s "." node ".hex"); next }
        /^===/ {
          if (s != "") for (n = 0; n <= 1; n++) {
            print gaps[n] > (dir "/" s "." n ".gaps")
            close(dir "/" s "." n ".gaps"); close(dir "/" s "." n ".hex"); close(dir "/" s "." n ".ep")
          }
          s = ""; next
        }
        s == "" || /^Follow: / || /^$/ { next }
        {
          n = 0; h = $0
          if (substr(h, 1, 1) == "\t") { n = 1; h = substr(h, 2) }
          g = gap_len(h)
          if (g >= 0) { gaps[n] = gaps[n] (gaps[n] == "" ? "" : " ") got[n] "+" g; next }
          got[n] += length(h) / 2
          print h >> (dir "/" s "." n ".hex")
        }'
  done
  {
    echo 'stream,node,endpoint,bytes,sha256,gaps'
    for s in "${ids[@]}"; do
      for n in 0 1; do
        hex=$tmp/$s.$n.hex
        bytes=$(tr -d '\n' < "$hex" | wc -c)
        sha=$(tr -d '\n' < "$hex" | xxd -r -p | sha256sum | cut -d' ' -f1)
        echo "$s,$n,$(cat "$tmp/$s.$n.ep"),$((bytes / 2)),$sha,$(cat "$tmp/$s.$n.gaps")"
      done
    done
  } > "$out/tcp_follow.csv"
  echo "$c: ${#ids[@]} streams -> $out/tcp_follow.csv"
done
