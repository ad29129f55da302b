#!/bin/bash
# gRPC message golden data from tshark's protobuf dissector, for the gRPC JSON decoder's tests.
# usage: scripts/golden-grpc-json.sh      (needs protoc and tshark; tests need neither)
# 1) Compiles fixtures/protos/*.proto into descriptor sets (fixtures/protos/<name>.binpb), as
#    `protoc --descriptor_set_out --include_imports` writes them: the decoder's input.
# 2) Rebuilds fixtures/captures/derived/grpc-inventory.pcap (scripts/make-grpc-capture.py).
# 3) Writes fixtures/golden/<capture>/grpc-messages.json: one object per gRPC message tshark
#    decoded with those .proto files, in capture order: frame, tcp_stream, path, direction
#    (request | response), type (the message type tshark chose) and fields, each
#    [name, show, display, raw, type] for a scalar (show: tshark's value, e.g. "1" for true, the number
#    of an enum, bytes as colon-separated hex; display: the text after "name: " in its tree, e.g.
#    "CONDITION_USED (2)"; raw: the field's value bytes in hex, which for a string are its UTF-8
#    exactly, where show writes control characters as spaces; type: the declared type as
#    FieldDescriptorProto.Type numbers it, 3 int64, 9 string, 14 enum...) or [name, {type,
#    fields}] for a message. Field names are the .proto
#    names; repeated fields appear once per element, map entries as messages with key and value.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROTOS=$ROOT/fixtures/protos
CAPS=$ROOT/fixtures/captures
GOLD=$ROOT/fixtures/golden
# Where protoc's well-known types live (google/protobuf/*.proto), for tshark's imports.
WKT=${PROTOC_INCLUDE:-/usr/include}

for p in "$PROTOS"/*.proto; do
  protoc --proto_path="$PROTOS" --descriptor_set_out="${p%.proto}.binpb" --include_imports "$(basename "$p")"
done
python3 "$ROOT/scripts/make-grpc-capture.py"

one() {
  local cap=$1 port=$2
  mkdir -p "$GOLD/$cap"
  tshark -n -r "$CAPS/$cap" -d "tcp.port==$port,http2" \
    -o "uat:protobuf_search_paths:\"$PROTOS\",\"TRUE\"" -o "uat:protobuf_search_paths:\"$WKT\",\"FALSE\"" \
    -o protobuf.pbf_as_hf:TRUE -Y protobuf -T pdml 2>/dev/null | python3 -c '
import json, sys, xml.etree.ElementTree as ET
def msg(el):
    name = ""
    fields = []
    types = {}
    for f in el.findall("field"):
        n = f.get("name") or ""
        if n == "protobuf.message.name":
            name = f.get("show")
        elif n == "" and (f.get("show") or "").startswith("Field("):
            # The generic field tree before each pbf field: its protobuf.field.type is the
            # declared type (FieldDescriptorProto.Type: 3 int64, 9 string, 14 enum, ...).
            fn = [c.get("show") for c in f.findall("field") if c.get("name") == "protobuf.field.name"]
            ft = [c.get("show") for c in f.findall("field") if c.get("name") == "protobuf.field.type"]
            if fn and ft:
                types[fn[0]] = int(ft[0])
        elif n.startswith("pbf."):
            field = n.rsplit(".", 1)[1]
            nested = [c for c in f.findall("field") if c.get("name") == "protobuf.message.name"]
            if nested:
                fields.append([field, msg(f)])
            else:
                showname = f.get("showname") or ""
                display = showname[len(field) + 2:] if showname.startswith(field + ": ") else showname
                fields.append([field, f.get("show"), display, f.get("value") or "", types.get(field, 0)])
    return {"type": name, "fields": fields}
out = []
for _, pkt in ET.iterparse(sys.stdin.buffer):
    if pkt.tag != "packet":
        continue
    frame = stream = ""
    for proto in pkt.findall("proto"):
        if proto.get("name") == "frame":
            frame = next(f.get("show") for f in proto.iter("field") if f.get("name") == "frame.number")
        elif proto.get("name") == "tcp":
            stream = next(f.get("show") for f in proto.iter("field") if f.get("name") == "tcp.stream")
        elif proto.get("name") == "protobuf":
            # "Protocol Buffers: /pkg.Service/Method,request (Message: pkg.Type)"
            head = proto.get("showname").split(": ", 1)[1].split(" ", 1)[0]
            path, direction = head.rsplit(",", 1)
            m = msg(proto)
            out.append({"frame": int(frame), "tcp_stream": int(stream), "path": path, "direction": direction, "type": m["type"], "fields": m["fields"]})
    pkt.clear()
print("[\n" + ",\n".join(json.dumps(m, ensure_ascii=False) for m in out) + "\n]")
' > "$GOLD/$cap/grpc-messages.json"
  echo "$cap: $(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$GOLD/$cap/grpc-messages.json") messages"
}

for c in grpc_Unary grpc_Bidi_Streaming grpc_Client_Streaming grpc_Server_Streaming; do
  one grpc-go-book/$c.pcapng 50051
done
one derived/grpc-inventory.pcap 50052
