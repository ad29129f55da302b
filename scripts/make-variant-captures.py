#!/usr/bin/env python3
"""Derive byte-order and timestamp-resolution variants of a little-endian microsecond pcap.

The readers must handle all four classic pcap flavours, but the third-party captures are all
little-endian with microsecond timestamps. This rewrites only the file and record headers
(packet bytes are untouched), so tshark's view of the variant must equal its view of the
original; the golden files for the variants are generated from the variants themselves.

usage: make-variant-captures.py in.pcap out-prefix
writes out-prefix.be-usec.pcap, out-prefix.be-nsec.pcap, out-prefix.le-nsec.pcap
"""
import struct, sys

src, prefix = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
magic, vmaj, vmin, tz, sig, snap, lt = struct.unpack('<IHHiIII', data[:24])
assert magic == 0xa1b2c3d4, 'expected a little-endian microsecond pcap'
records = []
off = 24
while off + 16 <= len(data):
    sec, usec, incl, orig = struct.unpack('<IIII', data[off:off + 16])
    records.append((sec, usec, incl, orig, data[off + 16:off + 16 + incl]))
    off += 16 + incl

for name, endian, nsec in (('be-usec', '>', False), ('be-nsec', '>', True), ('le-nsec', '<', True)):
    out = [struct.pack(endian + 'IHHiIII', 0xa1b23c4d if nsec else 0xa1b2c3d4, vmaj, vmin, tz, sig, snap, lt)]
    for sec, usec, incl, orig, body in records:
        # 1000*usec + 7 gives sub-microsecond digits that a reader must keep, not round away
        frac = usec * 1000 + 7 if nsec else usec
        out.append(struct.pack(endian + 'IIII', sec, frac, incl, orig) + body)
    open(f'{prefix}.{name}.pcap', 'wb').write(b''.join(out))
