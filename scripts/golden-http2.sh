#!/bin/bash
# HTTP/2 golden data from tshark, one row per HTTP/2 frame, for the dissectors' http2 tests.
# usage: scripts/golden-http2.sh            (every capture below)
#        scripts/golden-http2.sh CAPTURE DECODE-AS...   (one capture, e.g. ndpi/http2.pcapng tcp.port==29518,http2)
# Writes fixtures/golden/<capture>/http2-frames.psv with the columns:
#   frame | time (frame.time_epoch) | tcp_stream | src_port | stream_id | type | flags |
#   length (http2.length) | pad_length | headers | rst_error | grpc_lengths | grpc_compressed
# `headers` is the decoded header list of a HEADERS/CONTINUATION/PUSH_PROMISE frame as JSON
# ([[name, value], ...], bytes decoded as UTF-8, '|' written \u007c); tshark shows a header block
# on the frame that completes it. `grpc_lengths` / `grpc_compressed` list the gRPC messages
# tshark parsed on that DATA frame (comma-separated). Uses tshark's PDML output because its
# field output aggregates the frames of one packet and cannot say which field is whose.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CAPS=$ROOT/fixtures/captures
GOLD=$ROOT/fixtures/golden

one() {
  local cap=$1; shift
  local args=()
  for d in "$@"; do args+=(-d "$d"); done
  mkdir -p "$GOLD/$cap"
  tshark -n -2 -r "$CAPS/$cap" "${args[@]}" -Y http2 -T pdml 2>/dev/null | python3 -c '
import json, sys, xml.etree.ElementTree as ET
cols = ["frame", "time", "tcp_stream", "src_port", "stream_id", "type", "flags", "length", "pad_length", "headers", "rst_error", "grpc_lengths", "grpc_compressed"]
print("|".join(cols))
def fields(el):
    for f in el.iter("field"):
        yield f
def text(hexv):
    return bytes.fromhex(hexv or "").decode("utf-8", "replace")
for _, pkt in ET.iterparse(sys.stdin.buffer):
    if pkt.tag != "packet":
        continue
    frame = time = stream = sport = ""
    rows = []
    for proto in pkt.findall("proto"):
        name = proto.get("name")
        if name == "frame":
            for f in fields(proto):
                if f.get("name") == "frame.number": frame = f.get("show")
                if f.get("name") == "frame.time_epoch": time = f.get("show")
        elif name == "tcp":
            for f in fields(proto):
                if f.get("name") == "tcp.stream": stream = f.get("show")
                if f.get("name") == "tcp.srcport": sport = f.get("show")
        elif name == "http2":
            for st in proto.iter("field"):
                if st.get("name") != "http2.stream": continue
                r = {"type": "", "flags": "", "stream_id": "", "length": "", "pad_length": "", "headers": [], "rst_error": "", "grpc": []}
                names = []
                for f in fields(st):
                    n = f.get("name")
                    if n == "http2.type": r["type"] = f.get("show")
                    elif n == "http2.flags": r["flags"] = f.get("show")
                    elif n == "http2.streamid": r["stream_id"] = f.get("show")
                    elif n == "http2.length": r["length"] = f.get("show")
                    elif n == "http2.pad_length": r["pad_length"] = f.get("show")
                    elif n == "http2.rst_stream.error": r["rst_error"] = f.get("show")
                    elif n == "http2.header.name": names.append(text(f.get("value")))
                    elif n == "http2.header.value": r["headers"].append([names[-1] if names else "", text(f.get("value"))])
                rows.append(r)
        elif name == "grpc" and rows:
            ln = cf = ""
            for f in fields(proto):
                if f.get("name") == "grpc.message_length": ln = f.get("show")
                if f.get("name") == "grpc.compressed_flag": cf = f.get("show")
            rows[-1]["grpc"].append((ln, cf))
    for r in rows:
        h = json.dumps(r["headers"], ensure_ascii=True).replace("|", "\\u007c") if r["headers"] else ""
        print("|".join([frame, time, stream, sport, r["stream_id"], r["type"], r["flags"], r["length"], r["pad_length"], h, r["rst_error"],
                        ",".join(g[0] for g in r["grpc"]), ",".join(g[1] for g in r["grpc"])]))
    pkt.clear()
' > "$GOLD/$cap/http2-frames.psv"
  echo "$cap: $(($(wc -l < "$GOLD/$cap/http2-frames.psv") - 1)) frames"
}

if [ $# -gt 0 ]; then one "$@"; exit; fi
for c in grpc_Unary grpc_Bidi_Streaming grpc_Client_Streaming grpc_Server_Streaming; do
  one grpc-go-book/$c.pcapng tcp.port==50051,http2
done
one ndpi/http2.pcapng tcp.port==29518,http2
one suricata-verify/http2-keywords.pcap tcp.port==3000,http2
one suricata-verify/http2-continuation.pcap tcp.port==8080,http2
one suricata-verify/http2_multiple_headers.pcap
one suricata-verify/dns_over_https.pcap
