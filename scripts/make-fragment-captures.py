#!/usr/bin/env python3
"""Write fixtures/captures/derived/ipv4-fragments.pcap: IPv4 fragments for the reassembly tests.

None of the third-party captures holds IPv4 fragments, so this builds a small one by hand
(Ethernet, IPv4, UDP and TCP; little-endian microsecond pcap). tshark is the oracle for what it
contains: the golden files come from tshark's view of it (scripts/golden.sh), not from this
script. Checksums are computed so that every layer is valid.

  frames 1-4    a UDP query, and a TCP handshake between the same hosts
  frames 5-11   the server's 3000-byte UDP answer and a 3500-byte TCP segment, each in three
                fragments, interleaved and under the same IP id (the reassembly key includes
                the protocol). UDP: middle, first, last (out of order; the last completes it).
                TCP: last, first, a duplicate of the last, then the middle, which completes it
  frame 12      the client's ACK of the segment
  frames 13-14  the first and last fragments of a UDP datagram whose middle is never sent
  frames 15-17  40 s later (past a 30 s reassembly timeout), a datagram in two fragments
                that completes, and its unfragmented answer

usage: make-fragment-captures.py [out.pcap]   (default: fixtures/captures/derived/ipv4-fragments.pcap)
"""
import os
import struct
import sys

CLIENT = bytes([192, 0, 2, 1])
SERVER = bytes([198, 51, 100, 2])
MAC_C = bytes.fromhex('020000000001')
MAC_S = bytes.fromhex('020000000002')
T0 = 1_700_000_000


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack(f'!{len(data) // 2}H', data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack('!BBH', 0, proto, length)


def udp(src, dst, sport, dport, payload: bytes) -> bytes:
    hdr = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0)
    c = csum(pseudo(src, dst, 17, 8 + len(payload)) + hdr + payload) or 0xFFFF
    return struct.pack('!HHHH', sport, dport, 8 + len(payload), c) + payload


def tcp(src, dst, sport, dport, seq, ack, flags, payload: bytes = b'') -> bytes:
    hdr = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    c = csum(pseudo(src, dst, 6, len(hdr) + len(payload)) + hdr + payload)
    return hdr[:16] + struct.pack('!H', c) + hdr[18:] + payload


def ipv4(src, dst, proto, ident, body: bytes, frag_off: int = 0, more: bool = False) -> bytes:
    """One IPv4 packet; for a fragment, `body` is the fragment's data and frag_off its byte offset."""
    assert frag_off % 8 == 0
    field = (frag_off >> 3) | (0x2000 if more else 0)
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(body), ident, field, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:] + body


def fragments(src, dst, proto, ident, datagram: bytes, size: int) -> list:
    """Splits an IP payload into fragments of `size` data bytes (a multiple of 8), in order."""
    out = []
    for off in range(0, len(datagram), size):
        chunk = datagram[off:off + size]
        out.append(ipv4(src, dst, proto, ident, chunk, off, off + size < len(datagram)))
    return out


def eth(src_mac, dst_mac, ip: bytes) -> bytes:
    return dst_mac + src_mac + struct.pack('!H', 0x0800) + ip


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'captures', 'derived', 'ipv4-fragments.pcap')
    frames = []  # (seconds after T0, frame bytes)

    def c2s(t, ip):
        frames.append((t, eth(MAC_C, MAC_S, ip)))

    def s2c(t, ip):
        frames.append((t, eth(MAC_S, MAC_C, ip)))

    # A UDP query and a TCP handshake between the same hosts.
    c_isn, s_isn = 1000, 5000
    c2s(0.000100, ipv4(CLIENT, SERVER, 17, 0x0101, udp(CLIENT, SERVER, 40000, 7777, b'q' * 40)))
    c2s(1.000000, ipv4(CLIENT, SERVER, 6, 0x0102, tcp(CLIENT, SERVER, 41000, 80, c_isn, 0, 0x02)))
    s2c(1.020000, ipv4(SERVER, CLIENT, 6, 0x4241, tcp(SERVER, CLIENT, 80, 41000, s_isn, c_isn + 1, 0x12)))
    c2s(1.040000, ipv4(CLIENT, SERVER, 6, 0x0103, tcp(CLIENT, SERVER, 41000, 80, c_isn + 1, s_isn + 1, 0x10)))

    # The server answers with a 3000-byte UDP datagram (fragments of 1480, 1480, 48 bytes) and a
    # 3500-byte TCP segment (1480, 1480, 560) under the same IP id, interleaved: the reassembly
    # key includes the protocol. UDP arrives middle, first, last; TCP last, first, a duplicate
    # of the last, then the middle, which completes it.
    answer = udp(SERVER, CLIENT, 7777, 40000, bytes(i & 0xFF for i in range(3000)))
    u_first, u_middle, u_last = fragments(SERVER, CLIENT, 17, 0x4242, answer, 1480)
    segment = tcp(SERVER, CLIENT, 80, 41000, s_isn + 1, c_isn + 1, 0x18, bytes((i * 7) & 0xFF for i in range(3500)))
    t_first, t_middle, t_last = fragments(SERVER, CLIENT, 6, 0x4242, segment, 1480)
    s2c(1.100000, t_last)
    s2c(1.100100, u_middle)
    s2c(1.100200, t_first)
    s2c(1.100300, u_first)
    s2c(1.100400, t_last)  # duplicate, before the datagram completes
    s2c(1.100500, u_last)
    s2c(1.100600, t_middle)
    c2s(1.150000, ipv4(CLIENT, SERVER, 6, 0x0104, tcp(CLIENT, SERVER, 41000, 80, c_isn + 1, s_isn + 1 + 3500, 0x10)))

    # A UDP datagram that never completes: its middle fragment is missing.
    lost = udp(CLIENT, SERVER, 40001, 9999, b'x' * 2000)
    first, _middle, last = fragments(CLIENT, SERVER, 17, 0x0105, lost, 800)
    c2s(2.000000, first)
    c2s(2.000100, last)

    # 40 s later: a datagram in two fragments (the reassembly clock has passed the timeout of
    # the one above), then its answer.
    late = udp(CLIENT, SERVER, 40002, 9999, b'y' * 1000)
    first, last = fragments(CLIENT, SERVER, 17, 0x0106, late, 600)
    c2s(42.000000, first)
    c2s(42.000100, last)
    s2c(42.010000, ipv4(SERVER, CLIENT, 17, 0x4243, udp(SERVER, CLIENT, 9999, 40002, b'ok')))

    data = [struct.pack('<IHHiIII', 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for t, frame in frames:
        sec = T0 + int(t)
        usec = round((t - int(t)) * 1e6)
        data.append(struct.pack('<IIII', sec, usec, len(frame), len(frame)) + frame)
    with open(out, 'wb') as f:
        f.write(b''.join(data))


if __name__ == '__main__':
    main()
