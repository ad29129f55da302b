import { capturePath, loadGolden } from '@kubeshark-mcp/testkit';
import { DEFRAG_DROP_REASONS, FlowTracker, IP_FRAGMENT_REASON, IpDefragmenter, LinkType, decodePacket, describeFragment, newL4Packet, readCaptureFile, type DefragOptions, type RawPacket } from '../src';

/**
 * IP fragment reassembly. The golden tests (golden.test.ts) check the flows of the fragment
 * captures against tshark; here are the counters of those captures, and the bounds and
 * policies of IpDefragmenter driven fragment by fragment.
 */

const A4 = [192, 0, 2, 1];
const B4 = [198, 51, 100, 2];
const A6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

interface Frag {
  /** Byte offset of the data in the datagram. */
  off: number;
  more: boolean;
  data: Uint8Array;
  id?: number;
  proto?: number;
  src?: number[];
  dst?: number[];
}

/** An IPv4 fragment (raw IP, no link header). */
function ipv4(f: Frag): Buffer {
  const b = Buffer.alloc(20 + f.data.length);
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(f.id ?? 7, 4);
  b.writeUInt16BE((f.off >> 3) | (f.more ? 0x2000 : 0), 6);
  b[8] = 64;
  b[9] = f.proto ?? 17;
  b.set(f.src ?? A4, 12);
  b.set(f.dst ?? B4, 16);
  b.set(f.data, 20);
  return b;
}

/** An IPv6 fragment (raw IP): fixed header, `extLen` bytes of destination options, fragment header. */
function ipv6(f: Frag, extLen = 0): Buffer {
  const b = Buffer.alloc(40 + extLen + 8 + f.data.length);
  b[0] = 0x60;
  b.writeUInt16BE(extLen + 8 + f.data.length, 4);
  b[6] = extLen ? 60 : 44;
  b[7] = 64;
  b.set(f.src ?? A6, 8);
  b.set(f.dst ?? B6, 24);
  if (extLen) {
    b[40] = 44;
    b[41] = extLen / 8 - 1;
  }
  const h = 40 + extLen;
  b[h] = f.proto ?? 17;
  b.writeUInt16BE(f.off | (f.more ? 1 : 0), h + 2);
  b.writeUInt32BE(f.id ?? 7, h + 4);
  b.set(f.data, h + 8);
  return b;
}

function raw(buf: Buffer, sec = 100, nsec = 0, origLen = buf.length): RawPacket {
  return { buf, offset: 0, capLen: buf.length, origLen, tsSec: sec, tsNsec: nsec, linkType: LinkType.RAW, interfaceId: 0, frame: 1 };
}

/** A UDP datagram (header and payload) of `payloadLen` bytes of a counting pattern. */
function udp(payloadLen: number, sport = 1000, dport = 2000): Uint8Array {
  const b = Buffer.alloc(8 + payloadLen);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + payloadLen, 4);
  for (let i = 0; i < payloadLen; i++) b[8 + i] = i & 0xff;
  return b;
}

/** Decodes a fragment as the tracker does and offers it to `d`. */
function feed(d: IpDefragmenter, packet: Buffer, sec = 100, nsec = 0, capLen = packet.length): Buffer | undefined {
  const l4 = newL4Packet();
  expect(decodePacket({ ...raw(packet, sec, nsec), capLen }, l4)).toBe(IP_FRAGMENT_REASON);
  describeFragment(packet, l4);
  return d.add(packet, l4, sec, nsec);
}

const drops = (d: IpDefragmenter): Record<string, number> => Object.fromEntries(d.stats().drops.map((x) => [x.reason, x.count]));

/** Splits `datagram` at the given offsets (multiples of 8) into fragments. */
function split(datagram: Uint8Array, cuts: number[], extra: Partial<Frag> = {}): Frag[] {
  const bounds = [0, ...cuts, datagram.length];
  return bounds.slice(0, -1).map((off, i) => ({ ...extra, off, more: i < bounds.length - 2, data: datagram.subarray(off, bounds[i + 1]) }));
}

describe('decodePacket on fragments', () => {
  test('describes an IPv4 fragment', () => {
    const l4 = newL4Packet();
    const p = ipv4({ off: 1480, more: true, data: new Uint8Array(16), id: 0xbeef, proto: 6 });
    expect(decodePacket(raw(p), l4)).toBe(IP_FRAGMENT_REASON);
    describeFragment(p, l4);
    expect(l4).toMatchObject({ ipVersion: 4, srcOff: 12, dstOff: 16, fragIpOff: 0, fragCapEnd: 36, fragDataOff: 20, fragDataLen: 16, fragOffset: 1480, fragMore: true, fragId: 0xbeef, fragProto: 6 });
  });

  test('describes an IPv6 fragment after an extension header, and refuses a jumbogram', () => {
    const l4 = newL4Packet();
    const p = ipv6({ off: 2896, more: false, data: new Uint8Array(24), id: 0x12345678, proto: 17 }, 8);
    expect(decodePacket(raw(p), l4)).toBe(IP_FRAGMENT_REASON);
    describeFragment(p, l4);
    expect(l4).toMatchObject({ ipVersion: 6, srcOff: 8, dstOff: 24, fragIpOff: 0, fragCapEnd: 80, fragDataOff: 56, fragDataLen: 24, fragOffset: 2896, fragMore: false, fragId: 0x12345678, fragProto: 17 });
    p.writeUInt16BE(0, 4);
    expect(decodePacket(raw(p), l4)).toBe(IP_FRAGMENT_REASON);
    describeFragment(p, l4);
    expect(l4.fragDataLen).toBe(-1);
    const d = new IpDefragmenter();
    expect(d.add(p, l4, 1, 0)).toBeUndefined();
    expect(drops(d)).toEqual({ jumbogram: 1 });
  });

  test('walks past an atomic fragment header to a real one, as decodePacket does', () => {
    const inner = ipv6({ off: 8, more: true, data: new Uint8Array(16), id: 99, proto: 6 });
    // Insert an atomic fragment header (offset 0, no more) before the real one.
    const p = Buffer.concat([inner.subarray(0, 40), Buffer.from([44, 0, 0, 0, 0, 0, 0, 1]), inner.subarray(40)]);
    p.writeUInt16BE(inner.readUInt16BE(4) + 8, 4);
    const l4 = newL4Packet();
    expect(decodePacket(raw(p), l4)).toBe(IP_FRAGMENT_REASON);
    describeFragment(p, l4);
    expect(l4).toMatchObject({ fragDataOff: 56, fragDataLen: 16, fragOffset: 8, fragMore: true, fragId: 99, fragProto: 6 });
  });

  test('an atomic IPv6 fragment (offset 0, no more) is a whole packet', () => {
    const p = ipv6({ off: 0, more: false, data: udp(4) });
    const l4 = newL4Packet();
    expect(decodePacket(raw(p), l4)).toBe(0);
    expect(l4).toMatchObject({ protocol: 17, srcPort: 1000, dstPort: 2000, payloadLen: 4 });
  });
});

describe('IpDefragmenter', () => {
  test('reassembles IPv4 fragments out of order into an IP packet that decodes', () => {
    const d = new IpDefragmenter();
    const datagram = udp(3000);
    const [first, middle, last] = split(datagram, [1480, 2960]);
    expect(feed(d, ipv4(middle!))).toBeUndefined();
    expect(feed(d, ipv4(last!))).toBeUndefined();
    expect(d.stats()).toMatchObject({ fragments: 2, inFlight: 1, bufferedBytes: 1480 + 48 });
    const out = feed(d, ipv4(first!));
    expect(out).toBeDefined();
    expect(out!.subarray(20)).toEqual(Buffer.from(datagram));
    const l4 = newL4Packet();
    expect(decodePacket(raw(out!), l4)).toBe(0);
    expect(l4).toMatchObject({ ipVersion: 4, protocol: 17, srcPort: 1000, dstPort: 2000, payloadLen: 3000 });
    expect(d.stats()).toEqual({ fragments: 3, reassembled: 1, inFlight: 0, bufferedBytes: 0, drops: [] });
  });

  test('reassembles IPv6 fragments, dropping the extension headers before the fragment header', () => {
    const d = new IpDefragmenter();
    const datagram = udp(2000);
    const [first, last] = split(datagram, [1232]);
    expect(feed(d, ipv6(last!, 8))).toBeUndefined();
    const out = feed(d, ipv6(first!, 8));
    expect(out!.length).toBe(40 + datagram.length);
    expect(out!.subarray(40)).toEqual(Buffer.from(datagram));
    expect(out!.subarray(8, 40)).toEqual(Buffer.from([...A6, ...B6]));
    const l4 = newL4Packet();
    expect(decodePacket(raw(out!), l4)).toBe(0);
    expect(l4).toMatchObject({ ipVersion: 6, protocol: 17, payloadLen: 2000 });
  });

  test('keys on version, addresses, id, and for IPv4 only, the protocol', () => {
    const d = new IpDefragmenter();
    const [f0, f1] = split(udp(100), [64]);
    // Same addresses and id, another protocol: another IPv4 datagram.
    expect(feed(d, ipv4({ ...f0!, proto: 17 }))).toBeUndefined();
    expect(feed(d, ipv4({ ...f1!, proto: 6 }))).toBeUndefined();
    expect(feed(d, ipv4({ ...f0!, id: 8 }))).toBeUndefined();
    expect(feed(d, ipv4({ ...f1!, src: [192, 0, 2, 9] }))).toBeUndefined();
    expect(feed(d, ipv6({ ...f1!, proto: 6 }))).toBeUndefined();
    expect(d.stats().inFlight).toBe(5);
    expect(feed(d, ipv4({ ...f1!, proto: 17 }))).toBeDefined();
    // IPv6 has no protocol in the key (RFC 8200): the first fragment's next header is used.
    expect(feed(d, ipv6({ ...f0!, proto: 17 }))!.readUInt8(6)).toBe(17);
    expect(d.stats()).toMatchObject({ reassembled: 2, inFlight: 3 });
  });

  test('counts duplicates and keeps the first data on overlaps', () => {
    const d = new IpDefragmenter();
    const datagram = udp(56); // 64 bytes
    const [a, b] = split(datagram, [32]);
    expect(feed(d, ipv4(a!))).toBeUndefined();
    expect(feed(d, ipv4(a!))).toBeUndefined(); // exact duplicate
    expect(drops(d)).toEqual({ duplicate: 1 });
    // [16, 48) with other bytes: 16 held bytes are kept, 16 new ones are taken.
    const fake = new Uint8Array(32).fill(0xee);
    expect(feed(d, ipv4({ off: 16, more: true, data: fake }))).toBeUndefined();
    expect(drops(d)).toEqual({ duplicate: 1, overlap: 1 });
    expect(d.stats().bufferedBytes).toBe(48);
    // Covered already but not on held bounds: an overlap, not a duplicate.
    expect(feed(d, ipv4({ off: 8, more: true, data: new Uint8Array(16) }))).toBeUndefined();
    expect(drops(d)).toEqual({ duplicate: 1, overlap: 2 });
    const out = feed(d, ipv4(b!));
    expect(drops(d)).toEqual({ duplicate: 1, overlap: 3 });
    const expected = Buffer.from(datagram);
    expected.fill(0xee, 32, 48); // the overlapping fragment came before b's bytes
    expect(out!.subarray(20)).toEqual(expected);
    expect(d.stats()).toMatchObject({ reassembled: 1, inFlight: 0, bufferedBytes: 0 });
  });

  test('the last fragment fixes the length; contradicting fragments are refused', () => {
    const d = new IpDefragmenter();
    expect(feed(d, ipv4({ off: 16, more: false, data: new Uint8Array(16) }))).toBeUndefined(); // length 32
    expect(feed(d, ipv4({ off: 32, more: true, data: new Uint8Array(8) }))).toBeUndefined(); // past the end
    expect(feed(d, ipv4({ off: 8, more: false, data: new Uint8Array(8) }))).toBeUndefined(); // another end
    expect(drops(d)).toEqual({ inconsistent: 2 });
    // A last fragment that ends before held data is refused too.
    const e = new IpDefragmenter();
    expect(feed(e, ipv4({ off: 0, more: true, data: new Uint8Array(64) }))).toBeUndefined();
    expect(feed(e, ipv4({ off: 8, more: false, data: new Uint8Array(8) }))).toBeUndefined();
    expect(drops(e)).toEqual({ inconsistent: 1 });
    expect(feed(d, ipv4({ off: 0, more: true, data: udp(8) }))).toBeDefined();
  });

  test('refuses malformed, oversize and truncated fragments', () => {
    const d = new IpDefragmenter();
    expect(feed(d, ipv4({ off: 0, more: true, data: new Uint8Array(0) }))).toBeUndefined();
    expect(feed(d, ipv4({ off: 0, more: true, data: new Uint8Array(12) }))).toBeUndefined(); // not a multiple of 8
    expect(feed(d, ipv4({ off: 65528 - 8, more: false, data: new Uint8Array(8) }))).toBeUndefined(); // 20 + 65528 > 65535
    expect(feed(d, ipv4({ off: 65504, more: false, data: new Uint8Array(8) }))).toBeUndefined(); // 20 + 65512 = 65532: fits
    expect(feed(d, ipv6({ off: 65528, more: false, data: new Uint8Array(8) }))).toBeUndefined(); // payload 65536
    expect(feed(d, ipv6({ off: 65520, more: false, data: new Uint8Array(8) }))).toBeUndefined(); // payload 65528: fits
    const p = ipv4({ off: 0, more: true, data: new Uint8Array(64) });
    expect(feed(d, p, 100, 0, p.length - 1)).toBeUndefined(); // snap length cut it
    expect(drops(d)).toEqual({ malformed: 2, oversize: 2, truncated: 1 });
    expect(d.stats()).toMatchObject({ fragments: 7, inFlight: 2 });
  });

  test('drops incomplete datagrams after the timeout, in capture time', () => {
    const d = new IpDefragmenter(); // 30 s
    const [a, b] = split(udp(56), [32]);
    expect(feed(d, ipv4(a!), 1000, 500)).toBeUndefined();
    d.expire(1030, 500); // exactly 30 s: still in time
    expect(d.stats().inFlight).toBe(1);
    d.expire(1030, 1500);
    expect(d.stats()).toMatchObject({ inFlight: 0, bufferedBytes: 0, drops: [{ reason: 'timeout', count: 1 }] });
    // The missing fragment, too late: it starts a datagram of its own, which never completes.
    expect(feed(d, ipv4(b!), 1031, 0)).toBeUndefined();
    expect(d.stats()).toMatchObject({ inFlight: 1, reassembled: 0 });
    // A fragment's own time moves the clock; a timestamp from the past does not move it back.
    expect(feed(d, ipv4({ ...a!, id: 9 }), 1062, 0)).toBeUndefined();
    expect(feed(d, ipv4({ ...b!, id: 10 }), 900, 0)).toBeUndefined();
    expect(d.stats()).toMatchObject({ inFlight: 2, drops: [{ reason: 'timeout', count: 2 }] });
    // Shorter timeouts are honoured.
    const short = new IpDefragmenter({ timeoutSec: 1 });
    feed(short, ipv4(a!), 10, 0);
    expect(feed(short, ipv4(b!), 11, 1)).toBeUndefined();
    expect(drops(short)).toEqual({ timeout: 1 });
  });

  test('evicts the oldest datagram beyond maxDatagrams', () => {
    const d = new IpDefragmenter({ maxDatagrams: 3 });
    const [a, b] = split(udp(56), [32]);
    for (let id = 1; id <= 4; id++) feed(d, ipv4({ ...a!, id }), 100 + id);
    expect(d.stats()).toMatchObject({ inFlight: 3, bufferedBytes: 96, drops: [{ reason: 'evicted-max-datagrams', count: 1 }] });
    expect(feed(d, ipv4({ ...b!, id: 1 }))).toBeUndefined(); // evicted: starts over (and evicts id 2)
    expect(feed(d, ipv4({ ...b!, id: 3 }))).toBeDefined();
    expect(feed(d, ipv4({ ...b!, id: 4 }))).toBeDefined();
    expect(d.stats()).toMatchObject({ inFlight: 1, reassembled: 2, drops: [{ reason: 'evicted-max-datagrams', count: 2 }] });
  });

  test('evicts the oldest datagrams beyond maxBytes, and drops one that alone exceeds it', () => {
    const d = new IpDefragmenter({ maxBytes: 100 });
    const frag = (id: number, off: number, len: number, more = true) => ipv4({ id, off, more, data: new Uint8Array(len) });
    feed(d, frag(1, 0, 40));
    feed(d, frag(2, 0, 40));
    expect(d.stats()).toMatchObject({ inFlight: 2, bufferedBytes: 80 });
    feed(d, frag(3, 0, 40)); // 120 > 100: datagram 1 goes
    expect(d.stats()).toMatchObject({ inFlight: 2, bufferedBytes: 80, drops: [{ reason: 'evicted-max-bytes', count: 1 }] });
    // Growing datagram 3 past the budget evicts datagram 2, never datagram 3 itself.
    feed(d, frag(3, 40, 40));
    expect(d.stats()).toMatchObject({ inFlight: 1, bufferedBytes: 80, drops: [{ reason: 'evicted-max-bytes', count: 2 }] });
    expect(feed(d, frag(3, 80, 8, false))).toBeDefined();
    // A datagram bigger than the whole budget cannot be held.
    feed(d, frag(4, 0, 96));
    expect(d.stats()).toMatchObject({ inFlight: 1, bufferedBytes: 96 });
    feed(d, frag(4, 96, 8));
    expect(d.stats()).toMatchObject({ inFlight: 0, bufferedBytes: 0, drops: [{ reason: 'evicted-max-bytes', count: 3 }] });
  });

  test('copies fragment data: the packet buffer may be reused', () => {
    const d = new IpDefragmenter();
    const datagram = udp(56);
    const [a, b] = split(datagram, [32]);
    const p = ipv4(a!);
    feed(d, p);
    p.fill(0xff);
    expect(feed(d, ipv4(b!))!.subarray(20)).toEqual(Buffer.from(datagram));
  });

  test('every drop reason has a name', () => {
    expect(new Set(DEFRAG_DROP_REASONS).size).toBe(DEFRAG_DROP_REASONS.length);
  });
});

describe('FlowTracker with fragments', () => {
  const track = async (capture: string, options: { defrag?: DefragOptions } = {}) => {
    const tracker = new FlowTracker(options);
    const result = await readCaptureFile(capturePath(capture), tracker.onPacket);
    expect(result.error).toBeUndefined();
    return tracker;
  };

  test('ipv6-fragmented-dns: one datagram completes, one lone last fragment stays in flight', async () => {
    // Frame 4 is the last fragment (offset 2896) of a datagram whose other fragments were not
    // captured; frames 6-8 are one datagram, completed by frame 8.
    const t = await track('zeek/ipv6-fragmented-dns.pcap');
    const s = t.stats();
    expect(s.packets).toBe(loadGolden('zeek/ipv6-fragmented-dns.pcap').frames);
    expect(s.skipped).toEqual([{ reason: 'ip-fragment', count: 4 }]);
    expect(s.decoded).toBe(4);
    expect(s.defrag).toEqual({ fragments: 4, reassembled: 1, tracked: 1, untracked: [], inFlight: 1, bufferedBytes: 404 - 14 - 40 - 8, drops: [] });
  });

  test('ipv4-fragments: three datagrams complete, a duplicate, and one incomplete datagram times out', async () => {
    const t = await track('derived/ipv4-fragments.pcap');
    const s = t.stats();
    expect(s.skipped).toEqual([{ reason: 'ip-fragment', count: 11 }]);
    expect(s.decoded).toBe(6);
    expect(s.defrag).toEqual({
      fragments: 11,
      reassembled: 3,
      tracked: 3,
      untracked: [],
      inFlight: 0,
      bufferedBytes: 0,
      drops: [
        { reason: 'duplicate', count: 1 },
        { reason: 'timeout', count: 1 },
      ],
    });
  });

  test('options reach the defragmenter', async () => {
    // 1 KiB holds only the last datagram (1008 bytes); every other one is dropped on arrival of
    // its first 1480-byte fragment, or of the fragment that takes it past 1 KiB. The UDP answer's
    // last fragment (48 bytes) is held alone until it times out.
    const t = await track('derived/ipv4-fragments.pcap', { defrag: { maxBytes: 1024 } });
    expect(t.stats().defrag).toMatchObject({
      reassembled: 1,
      tracked: 1,
      inFlight: 0,
      drops: [
        { reason: 'timeout', count: 1 },
        { reason: 'evicted-max-bytes', count: 5 },
      ],
    });
  });

  test('a timeout is applied when stats are read, at the newest capture time', () => {
    const t = new FlowTracker();
    const [a] = split(udp(56), [32]);
    t.onPacket(raw(ipv4(a!), 100));
    expect(t.stats().defrag.inFlight).toBe(1);
    const other = ipv4({ off: 0, more: false, data: udp(4) });
    t.onPacket(raw(other, 131));
    expect(t.stats().defrag).toMatchObject({ inFlight: 0, drops: [{ reason: 'timeout', count: 1 }] });
  });

  test('a reassembled datagram counts as one packet of the completing frame, with the whole payload', () => {
    const t = new FlowTracker();
    const [a, b] = split(udp(100), [64]);
    t.onPacket(raw(ipv4(b!), 5, 10, 1000));
    expect(t.flows.size).toBe(0);
    expect(t.onPacket(raw(ipv4(a!), 5, 20, 1500))).toBe(0);
    const [f] = [...t.flows.all()];
    expect(f).toMatchObject({ protocol: 'udp', clientToServer: { packets: 1, bytes: 1500, payloadBytes: 100 }, firstSeen: { sec: 5, nsec: 20 }, lastSeen: { sec: 5, nsec: 20 } });
    // A reassembled datagram that is not TCP or UDP is counted, not tracked.
    t.onPacket(raw(ipv4({ off: 8, more: false, data: new Uint8Array(8), proto: 1, id: 3 }), 6));
    t.onPacket(raw(ipv4({ off: 0, more: true, data: new Uint8Array(8), proto: 1, id: 3 }), 6));
    expect(t.stats().defrag).toMatchObject({ reassembled: 2, tracked: 1, untracked: [{ reason: 'other-transport', count: 1 }] });
  });
});
