import { u16be, u16le, u32be, u32le } from './bytes';
import type { IpFragment } from './defrag';
import type { RawPacket } from './reader';

/** LINKTYPE_* values the decoder understands. */
export const LinkType = {
  NULL: 0,
  ETHERNET: 1,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  NFLOG: 239,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;

/**
 * Why a packet yielded no tracked TCP/UDP header. `skip` reasons are traffic we do not track
 * (ARP, ICMP) and IP fragments, which go to reassembly (`ip-fragment` counts every fragment;
 * what reassembly makes of them is in `IpDefragmenter`'s counters); `error` reasons are
 * malformed or unsupported input. The index of a reason is its numeric code; 0 means the
 * packet decoded.
 */
export const DECODE_REASONS = [
  { name: 'ok', kind: 'ok' },
  { name: 'non-ip', kind: 'skip' },
  { name: 'other-transport', kind: 'skip' },
  { name: 'ip-fragment', kind: 'skip' },
  { name: 'unsupported-link-type', kind: 'error' },
  { name: 'truncated-link-header', kind: 'error' },
  { name: 'truncated-ip-header', kind: 'error' },
  { name: 'bad-ip-version', kind: 'error' },
  { name: 'bad-ip-header-length', kind: 'error' },
  { name: 'truncated-ipv6-extension', kind: 'error' },
  { name: 'truncated-tcp-header', kind: 'error' },
  { name: 'bad-tcp-header-length', kind: 'error' },
  { name: 'truncated-udp-header', kind: 'error' },
  { name: 'bad-nflog', kind: 'error' },
  { name: 'too-many-vlan-tags', kind: 'error' },
] as const;

export type DecodeReason = (typeof DECODE_REASONS)[number]['name'];

const OK = 0;
const NON_IP = 1;
const OTHER_TRANSPORT = 2;
const IP_FRAGMENT = 3;
/**
 * The code `decodePacket` returns for an IP fragment. It then sets `fragIpOff` and `fragCapEnd`
 * only; `describeFragment` fills in the rest.
 */
export const IP_FRAGMENT_REASON = IP_FRAGMENT;
const UNSUPPORTED_LINK = 4;
const TRUNC_LINK = 5;
const TRUNC_IP = 6;
const BAD_IP_VERSION = 7;
const BAD_IP_HLEN = 8;
const TRUNC_IPV6_EXT = 9;
const TRUNC_TCP = 10;
const BAD_TCP_HLEN = 11;
const TRUNC_UDP = 12;
const BAD_NFLOG = 13;
const VLAN_DEPTH = 14;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** TCP flag bits as in the header's flags byte. */
export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

/**
 * Decoded network and transport headers of one packet, as offsets into `RawPacket.buf`.
 * For a fragment (`decodePacket` returned `IP_FRAGMENT_REASON`, then `describeFragment` ran)
 * the address offsets and the `IpFragment` fields are set instead of the transport ones.
 */
export interface L4Packet extends IpFragment {
  ipVersion: 4 | 6;
  /** Offsets of the source and destination addresses (4 or 16 bytes). */
  srcOff: number;
  dstOff: number;
  /** IPPROTO_TCP or IPPROTO_UDP. */
  protocol: number;
  srcPort: number;
  dstPort: number;
  /** TCP flags byte (0 for UDP). */
  tcpFlags: number;
  /** TCP sequence and acknowledgement numbers (0 for UDP). */
  seq: number;
  ack: number;
  window: number;
  /** Transport payload length from the IP and transport headers (not the captured length). */
  payloadLen: number;
  /** Offset of the transport payload in the buffer. */
  payloadOff: number;
}

export function newL4Packet(): L4Packet {
  return {
    ipVersion: 4,
    srcOff: 0,
    dstOff: 0,
    protocol: 0,
    srcPort: 0,
    dstPort: 0,
    tcpFlags: 0,
    seq: 0,
    ack: 0,
    window: 0,
    payloadLen: 0,
    payloadOff: 0,
    fragIpOff: 0,
    fragCapEnd: 0,
    fragDataOff: 0,
    fragDataLen: 0,
    fragOffset: 0,
    fragMore: false,
    fragId: 0,
    fragProto: 0,
  };
}

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_VLAN = 0x8100;
const ETH_QINQ = 0x88a8;
const ETH_QINQ_OLD = 0x9100;
const ETH_PPPOE_SESSION = 0x8864;
const ETH_MPLS = 0x8847;
const ETH_MPLS_MULTICAST = 0x8848;
const PPP_IPV4 = 0x0021;
const PPP_IPV6 = 0x0057;
/** Bound on stacked VLAN tags or MPLS labels, so a crafted frame cannot loop for long. */
const MAX_VLAN_TAGS = 8;

/**
 * Decodes link, network and transport headers into `out` and returns a reason code: 0 when a
 * TCP or UDP header was found, otherwise an index into `DECODE_REASONS`. Never throws on
 * packet content; allocates nothing.
 */
export function decodePacket(p: RawPacket, out: L4Packet): number {
  const b = p.buf;
  const start = p.offset;
  const end = start + p.capLen;
  switch (p.linkType) {
    case LinkType.ETHERNET:
      return decodeEthernet(b, start, end, out);
    case LinkType.NULL: {
      if (end - start < 4) return TRUNC_LINK;
      // The family is in the byte order of the host that captured; values are small, so
      // whichever reading is below 0x10000 is the right one.
      let fam = u32le(b, start);
      if (fam > 0xffff) fam = u32be(b, start);
      return decodeBsdFamily(fam, b, start + 4, end, out);
    }
    case LinkType.LOOP:
      if (end - start < 4) return TRUNC_LINK;
      return decodeBsdFamily(u32be(b, start), b, start + 4, end, out);
    case LinkType.LINUX_SLL:
      if (end - start < 16) return TRUNC_LINK;
      return decodeEtherType(u16be(b, start + 14), b, start + 16, end, out);
    case LinkType.LINUX_SLL2:
      if (end - start < 20) return TRUNC_LINK;
      return decodeEtherType(u16be(b, start), b, start + 20, end, out);
    case LinkType.RAW:
    case 12: // LINKTYPE_RAW as some BSDs number it
    case 14:
      return decodeRawIp(b, start, end, out);
    case LinkType.IPV4:
      return decodeIpv4(b, start, end, out);
    case LinkType.IPV6:
      return decodeIpv6(b, start, end, out);
    case LinkType.NFLOG:
      return decodeNflog(b, start, end, out);
    default:
      return UNSUPPORTED_LINK;
  }
}

function decodeEthernet(b: Buffer, start: number, end: number, out: L4Packet): number {
  if (end - start < 14) return TRUNC_LINK;
  return decodeEtherType(u16be(b, start + 12), b, start + 14, end, out);
}

/** Follows 802.1Q / 802.1ad (QinQ) tags, which may also appear inside cooked captures. */
function decodeEtherType(type: number, b: Buffer, off: number, end: number, out: L4Packet): number {
  let tags = 0;
  while (type === ETH_VLAN || type === ETH_QINQ || type === ETH_QINQ_OLD) {
    if (++tags > MAX_VLAN_TAGS) return VLAN_DEPTH;
    if (end - off < 4) return TRUNC_LINK;
    type = u16be(b, off + 2);
    off += 4;
  }
  if (type === ETH_IPV4) return decodeIpv4(b, off, end, out);
  if (type === ETH_IPV6) return decodeIpv6(b, off, end, out);
  if (type === ETH_PPPOE_SESSION) {
    // PPPoE header (6 bytes), then the 2-byte PPP protocol.
    if (end - off < 8) return TRUNC_LINK;
    const ppp = u16be(b, off + 6);
    if (ppp === PPP_IPV4) return decodeIpv4(b, off + 8, end, out);
    if (ppp === PPP_IPV6) return decodeIpv6(b, off + 8, end, out);
    return NON_IP;
  }
  if (type === ETH_MPLS || type === ETH_MPLS_MULTICAST) {
    // Label stack entries of 4 bytes until the bottom-of-stack bit; the payload's first
    // nibble then tells IPv4 from IPv6 (MPLS carries no payload type).
    for (let labels = 0; ; labels++) {
      if (labels >= MAX_VLAN_TAGS) return VLAN_DEPTH;
      if (end - off < 4) return TRUNC_LINK;
      const bottom = b[off + 2]! & 0x01;
      off += 4;
      if (bottom) break;
    }
    return decodeRawIp(b, off, end, out);
  }
  return NON_IP;
}

function decodeBsdFamily(fam: number, b: Buffer, off: number, end: number, out: L4Packet): number {
  if (fam === 2) return decodeIpv4(b, off, end, out);
  // AF_INET6 differs by OS: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS), 10 (Linux).
  if (fam === 24 || fam === 28 || fam === 30 || fam === 10) return decodeIpv6(b, off, end, out);
  return NON_IP;
}

function decodeRawIp(b: Buffer, off: number, end: number, out: L4Packet): number {
  if (end - off < 1) return TRUNC_IP;
  const v = b[off]! >> 4;
  if (v === 4) return decodeIpv4(b, off, end, out);
  if (v === 6) return decodeIpv6(b, off, end, out);
  return BAD_IP_VERSION;
}

const NFULA_PAYLOAD = 9;

function decodeNflog(b: Buffer, start: number, end: number, out: L4Packet): number {
  if (end - start < 4) return TRUNC_LINK;
  const family = b[start]!;
  let off = start + 4;
  // TLVs: 16-bit length and type in the byte order of the capturing host (little-endian on
  // every platform that produces these captures in practice); each padded to 4 bytes.
  while (off + 4 <= end) {
    const len = u16le(b, off);
    const type = u16le(b, off + 2) & 0x7fff;
    if (len < 4) return BAD_NFLOG;
    if (type === NFULA_PAYLOAD) {
      const pEnd = Math.min(off + len, end);
      if (family === 2) return decodeIpv4(b, off + 4, pEnd, out);
      if (family === 10) return decodeIpv6(b, off + 4, pEnd, out);
      return decodeRawIp(b, off + 4, pEnd, out);
    }
    off += (len + 3) & ~3;
  }
  return NON_IP;
}

function decodeIpv4(b: Buffer, off: number, end: number, out: L4Packet): number {
  if (end - off < 20) return TRUNC_IP;
  const vihl = b[off]!;
  if (vihl >> 4 !== 4) return BAD_IP_VERSION;
  const hlen = (vihl & 0x0f) << 2;
  if (hlen < 20) return BAD_IP_HLEN;
  if (end - off < hlen) return TRUNC_IP;
  let totalLen = u16be(b, off + 2);
  // Segmentation offload leaves a zero total length; the captured bytes are all we know.
  if (totalLen === 0) totalLen = end - off;
  if (totalLen < hlen) return BAD_IP_HLEN;
  const fragField = u16be(b, off + 6);
  if ((fragField & 0x3fff) !== 0) {
    // MF set or a non-zero offset. describeFragment does the rest, off this path.
    out.fragIpOff = off;
    out.fragCapEnd = end;
    return IP_FRAGMENT;
  }
  out.ipVersion = 4;
  out.srcOff = off + 12;
  out.dstOff = off + 16;
  return decodeTransport(b[off + 9]!, b, off + hlen, end, totalLen - hlen, out);
}

function decodeIpv6(b: Buffer, off: number, end: number, out: L4Packet): number {
  if (end - off < 40) return TRUNC_IP;
  if (b[off]! >> 4 !== 6) return BAD_IP_VERSION;
  let remaining = u16be(b, off + 4);
  if (remaining === 0) remaining = end - off - 40; // jumbogram or offload: use what was captured
  let next = b[off + 6]!;
  let h = off + 40;
  out.ipVersion = 6;
  out.srcOff = off + 8;
  out.dstOff = off + 24;
  // Walk extension headers to the transport header.
  for (let i = 0; i < 16; i++) {
    switch (next) {
      case 0: // hop-by-hop
      case 43: // routing
      case 60: // destination options
      case 135: // mobility
      case 139: // HIP
      case 140: {
        // shim6
        if (end - h < 8) return TRUNC_IPV6_EXT;
        const len = (b[h + 1]! + 1) << 3;
        next = b[h]!;
        h += len;
        remaining -= len;
        continue;
      }
      case 44: {
        // fragment: only an atomic fragment (offset 0, no more fragments) carries a whole packet
        if (end - h < 8) return TRUNC_IPV6_EXT;
        const fo = u16be(b, h + 2);
        if ((fo & 0xfff9) !== 0) {
          out.fragIpOff = off;
          out.fragCapEnd = end;
          return IP_FRAGMENT;
        }
        next = b[h]!;
        h += 8;
        remaining -= 8;
        continue;
      }
      case 51: {
        // authentication header: length in 4-byte units, minus 2
        if (end - h < 8) return TRUNC_IPV6_EXT;
        const len = (b[h + 1]! + 2) << 2;
        next = b[h]!;
        h += len;
        remaining -= len;
        continue;
      }
      default:
        return decodeTransport(next, b, h, end, remaining, out);
    }
  }
  return TRUNC_IPV6_EXT;
}

function decodeTransport(proto: number, b: Buffer, off: number, end: number, ipPayloadLen: number, out: L4Packet): number {
  if (proto === IPPROTO_TCP) {
    if (end - off < 20) return TRUNC_TCP;
    const thl = (b[off + 12]! >> 4) << 2;
    if (thl < 20) return BAD_TCP_HLEN;
    out.protocol = IPPROTO_TCP;
    out.srcPort = u16be(b, off);
    out.dstPort = u16be(b, off + 2);
    out.seq = u32be(b, off + 4);
    out.ack = u32be(b, off + 8);
    out.tcpFlags = b[off + 13]!;
    out.window = u16be(b, off + 14);
    const payload = ipPayloadLen - thl;
    out.payloadLen = payload > 0 ? payload : 0;
    out.payloadOff = off + thl;
    return OK;
  }
  if (proto === IPPROTO_UDP) {
    if (end - off < 8) return TRUNC_UDP;
    out.protocol = IPPROTO_UDP;
    out.srcPort = u16be(b, off);
    out.dstPort = u16be(b, off + 2);
    out.seq = 0;
    out.ack = 0;
    out.tcpFlags = 0;
    out.window = 0;
    const udpLen = u16be(b, off + 4);
    out.payloadLen = udpLen >= 8 ? udpLen - 8 : Math.max(0, ipPayloadLen - 8);
    out.payloadOff = off + 8;
    return OK;
  }
  return OTHER_TRANSPORT;
}

/**
 * Completes the description of a fragment for which `decodePacket` returned
 * `IP_FRAGMENT_REASON`: fills the `IpFragment` fields of `out` from the IP header at
 * `out.fragIpOff`. Pure and allocation-free, like `decodePacket`.
 *
 * Why a second call: the decoder's functions are inlined into one another within V8's bytecode
 * budget, and building the description inside `decodeIpv4`/`decodeIpv6` grew them enough to
 * cost whole packets 3-5% (measured with `npm run bench`); two stores there cost nothing
 * measurable. Fragments are rare, so walking the IPv6 extension headers twice is cheap.
 */
export function describeFragment(b: Uint8Array, out: L4Packet): void {
  const off = out.fragIpOff;
  if (b[off]! >> 4 === 4) {
    const hlen = (b[off]! & 0x0f) << 2;
    let totalLen = u16be(b, off + 2);
    if (totalLen === 0) totalLen = out.fragCapEnd - off; // as decodeIpv4 reads it
    const fragField = u16be(b, off + 6);
    out.ipVersion = 4;
    out.srcOff = off + 12;
    out.dstOff = off + 16;
    out.fragDataOff = off + hlen;
    out.fragDataLen = totalLen - hlen;
    out.fragOffset = (fragField & 0x1fff) << 3;
    out.fragMore = (fragField & 0x2000) !== 0;
    out.fragId = u16be(b, off + 4);
    out.fragProto = b[off + 9]!;
    return;
  }
  out.ipVersion = 6;
  out.srcOff = off + 8;
  out.dstOff = off + 24;
  const payloadLen = u16be(b, off + 4);
  // Payload bytes after the extension headers before the fragment header. decodeIpv6 walked
  // these headers within the captured bytes to reach the fragment header, so this walk does too.
  let remaining = payloadLen;
  let next = b[off + 6]!;
  let h = off + 40;
  for (let i = 0; i < 16; i++) {
    let len: number;
    if (next === 44) {
      if ((u16be(b, h + 2) & 0xfff9) !== 0) break;
      len = 8; // an atomic fragment header, skipped as decodeIpv6 does
    } else {
      len = next === 51 ? (b[h + 1]! + 2) << 2 : (b[h + 1]! + 1) << 3;
    }
    next = b[h]!;
    h += len;
    remaining -= len;
  }
  const fo = u16be(b, h + 2);
  out.fragDataOff = h + 8;
  // A zero payload length is a jumbogram, which RFC 2675 forbids to fragment: no length.
  out.fragDataLen = payloadLen === 0 ? -1 : remaining - 8;
  out.fragOffset = fo & 0xfff8;
  out.fragMore = (fo & 1) !== 0;
  out.fragId = u32be(b, h + 4);
  out.fragProto = b[h]!;
}
