#!/usr/bin/env python3
"""Write fixtures/captures/derived/grpc-inventory.pcap: gRPC calls whose messages use every kind
of field the proto3 JSON mapping treats specially, for the gRPC JSON decoder's tests.

The grpc-go-book captures only carry one-string messages. This builds a capture (Ethernet, IPv4,
TCP; little-endian microsecond pcap) of two calls to shop.inventory.v1.InventoryService
(fixtures/protos/inventory.proto) over prior-knowledge h2c on port 50052. The messages are
encoded by protoc (`protoc --encode`) from the text-format messages below, not by the code under
test; tshark is the oracle for what they contain (scripts/golden-grpc-json.sh). HPACK: literal
header fields without indexing, names and values not Huffman-coded.

  stream 1  GetItem: the request (with a StringValue wrapper) in one DATA frame; the response,
            an Item with every field set, split over three DATA frames in two TCP segments
  stream 3  ListItems, response compressed (grpc-encoding: gzip, compressed flag set), the
            request not; two items in the list

usage: make-grpc-capture.py [out.pcap]   (needs protoc on PATH)
"""
import gzip
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = os.path.join(HERE, '..', 'fixtures', 'protos')
CLIENT = bytes([10, 1, 0, 5])
SERVER = bytes([10, 1, 0, 9])
MAC_C = bytes.fromhex('020000000005')
MAC_S = bytes.fromhex('020000000009')
CPORT, SPORT = 41234, 50052
T0 = 1_764_150_000

GET_REQUEST = 'sku: "SKU-1001" warehouse { value: "ams-1" }'
ITEM_FULL = '''
sku: "SKU-1001"
stock_count: 18446744073709551615
delta: -9007199254740993
weight_kg: 1.25
rating: 4.5
active: true
thumbnail: "\\x89PNG\\r\\n\\x00\\xff"
condition: CONDITION_USED
price { currency_code: "EUR" units: 1234567890123 nanos: -500000000 }
tags: "red" tags: "sale" tags: "käse"
bin_ids: 3 bin_ids: -7 bin_ids: 2147483647
stock_by_site { key: "ams" value: 12 }
stock_by_site { key: "fra" value: 0 }
batch_no: 77
updated_at { seconds: 1764150000 nanos: 123000000 }
shelf_life { seconds: 3600 nanos: 500 }
reorder_level: 0
checksum: 12345678901234567890
temperature: -40
display_name: "Blue mug"
history { currency_code: "EUR" units: 9 }
history { currency_code: "USD" units: -3 nanos: 250000000 }
'''
LIST_REQUEST = 'sku: "SKU-*"'
LIST_RESPONSE = '''
items { sku: "SKU-1" condition: CONDITION_NEW supplier_id: "acme" active: true }
items { sku: "SKU-2" stock_count: 5 delta: 42 tags: "x" condition: 7 }
next_page_token: "p2"
'''


def encode(type_name: str, text: str) -> bytes:
    return subprocess.run(['protoc', f'--proto_path={PROTOS}', f'--encode={type_name}', 'inventory.proto'], input=text.encode(), capture_output=True, check=True).stdout


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack(f'!{len(data) // 2}H', data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp(src, dst, sport, dport, seq, ack, flags, payload: bytes = b'') -> bytes:
    hdr = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    c = csum(src + dst + struct.pack('!BBH', 0, 6, len(hdr) + len(payload)) + hdr + payload)
    return hdr[:16] + struct.pack('!H', c) + hdr[18:] + payload


def ipv4(src, dst, ident, body: bytes) -> bytes:
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), ident, 0x4000, 64, 6, 0, src, dst)
    return hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:] + body


def frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack('!I', len(payload))[1:] + bytes([ftype, flags]) + struct.pack('!I', sid) + payload


def hpack_int(v: int, prefix: int, first: int) -> bytes:
    limit = (1 << prefix) - 1
    if v < limit:
        return bytes([first | v])
    out = [first | limit]
    v -= limit
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def headers(fields) -> bytes:
    """Literal header fields without indexing, new names, no Huffman coding."""
    out = b''
    for name, value in fields:
        n, v = name.encode(), value.encode()
        out += b'\x00' + hpack_int(len(n), 7, 0) + n + hpack_int(len(v), 7, 0) + v
    return out


def grpc_message(msg: bytes, compressed: bool = False) -> bytes:
    return struct.pack('!BI', 1 if compressed else 0, len(msg)) + msg


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', 'fixtures', 'captures', 'derived', 'grpc-inventory.pcap')
    get_req = grpc_message(encode('shop.inventory.v1.GetItemRequest', GET_REQUEST))
    item = grpc_message(encode('shop.inventory.v1.Item', ITEM_FULL))
    list_req = grpc_message(encode('shop.inventory.v1.GetItemRequest', LIST_REQUEST))
    # mtime 0 keeps the gzip member (and so the capture) the same on every run.
    list_res = grpc_message(gzip.compress(encode('shop.inventory.v1.ListItemsResponse', LIST_RESPONSE), mtime=0), compressed=True)

    def req_headers(path: str, extra=()) -> bytes:
        return headers([(':method', 'POST'), (':scheme', 'http'), (':path', path), (':authority', 'inventory:50052'), ('content-type', 'application/grpc'), ('te', 'trailers'), *extra])

    res_headers = lambda extra=(): headers([(':status', '200'), ('content-type', 'application/grpc'), *extra])  # noqa: E731
    trailers = headers([('grpc-status', '0')])
    preface = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + frame(4, 0, 0, b'')
    cut1, cut2 = 7, len(item) // 2
    client_segments = [
        preface,
        frame(4, 1, 0, b'') + frame(1, 4, 1, req_headers('/shop.inventory.v1.InventoryService/GetItem')) + frame(0, 1, 1, get_req),
        frame(1, 4, 3, req_headers('/shop.inventory.v1.InventoryService/ListItems', [('grpc-accept-encoding', 'gzip')])) + frame(0, 1, 3, list_req),
    ]
    server_segments = [
        frame(4, 0, 0, b'') + frame(4, 1, 0, b''),
        frame(1, 4, 1, res_headers()) + frame(0, 0, 1, item[:cut1]) + frame(0, 0, 1, item[cut1:cut2]),
        frame(0, 0, 1, item[cut2:]) + frame(1, 5, 1, trailers),
        frame(1, 4, 3, res_headers([('grpc-encoding', 'gzip')])) + frame(0, 0, 3, list_res) + frame(1, 5, 3, trailers),
    ]

    frames = []
    seq = {'c': 1000, 's': 7000}
    ident = {'c': 1, 's': 1}
    t = [0.0]

    def send(who: str, flags: int, payload: bytes = b'') -> None:
        t[0] += 0.000250
        src, dst, sport, dport = (CLIENT, SERVER, CPORT, SPORT) if who == 'c' else (SERVER, CLIENT, SPORT, CPORT)
        other = 's' if who == 'c' else 'c'
        ack = seq[other] if flags & 0x10 else 0
        ip = ipv4(src, dst, ident[who], tcp(src, dst, sport, dport, seq[who], ack, flags, payload))
        ident[who] += 1
        seq[who] += len(payload) + (1 if flags & 0x03 else 0)
        mac = (MAC_C, MAC_S) if who == 'c' else (MAC_S, MAC_C)
        frames.append((t[0], mac[1] + mac[0] + struct.pack('!H', 0x0800) + ip))

    send('c', 0x02)
    send('s', 0x12)
    send('c', 0x10)
    send('c', 0x18, client_segments[0])
    send('s', 0x18, server_segments[0])
    send('c', 0x18, client_segments[1])
    send('s', 0x18, server_segments[1])
    send('s', 0x18, server_segments[2])
    send('c', 0x18, client_segments[2])
    send('s', 0x18, server_segments[3])
    send('c', 0x11)
    send('s', 0x11)
    send('c', 0x10)

    data = [struct.pack('<IHHiIII', 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for when, f in frames:
        usec = round(when * 1e6)
        data.append(struct.pack('<IIII', T0 + usec // 1_000_000, usec % 1_000_000, len(f), len(f)) + f)
    with open(out, 'wb') as fh:
        fh.write(b''.join(data))


if __name__ == '__main__':
    main()
