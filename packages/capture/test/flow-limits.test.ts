import { capturePath, loadGolden } from '@kubeshark-mcp/testkit';
import { FlowTable, FlowTracker, decodePacket, newL4Packet, readCaptureFile, type FlowRecord, type RawPacket } from '../src';

/** Flow memory limits (by age and by count), stable ids across eviction, and UDP idle timeouts. */

function udp(src: number, sport: number, tsSec: number): RawPacket {
  // Ethernet + IPv4 + UDP, 10.0.0.<src>:<sport> -> 10.0.0.1:53, 4 bytes of payload.
  const b = Buffer.alloc(14 + 20 + 8 + 4);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(20 + 8 + 4, 16);
  b[14 + 8] = 64;
  b[14 + 9] = 17;
  b.set([10, 0, 0, src], 14 + 12);
  b.set([10, 0, 0, 1], 14 + 16);
  b.writeUInt16BE(sport, 34);
  b.writeUInt16BE(53, 36);
  b.writeUInt16BE(12, 38);
  return { buf: b, offset: 0, capLen: b.length, origLen: b.length, tsSec, tsNsec: 0, linkType: 1, interfaceId: 0, frame: 0 };
}

test('the count limit drops the least recently seen flows; the rest keep their ids and counters', async () => {
  const capture = 'ndpi/http_ipv6.pcap';
  const full = new FlowTracker();
  await readCaptureFile(capturePath(capture), full.onPacket);
  const all = [...full.flows.all()];
  expect(all.length).toBe(loadGolden(capture).tcp.length + loadGolden(capture).udp.length);

  const limited = new FlowTracker();
  await readCaptureFile(capturePath(capture), limited.onPacket);
  const dropped = limited.flows.evict(-Infinity, 5);
  expect(dropped).toBe(all.length - 5);
  const kept = [...limited.flows.all()];
  const lastUs = (f: FlowRecord): number => f.lastSeen.sec * 1e9 + f.lastSeen.nsec;
  const expected = [...all].sort((a, b) => lastUs(b) - lastUs(a) || b.index - a.index).slice(0, 5);
  expect(kept.map((f) => f.index)).toEqual(expected.map((f) => f.index).sort((a, b) => a - b));
  for (const f of kept) expect(f).toEqual(all.find((x) => x.index === f.index));
  expect(limited.stats().flowsEvicted).toBe(dropped);
  // Rows moved, ids did not: look-ups by id still find each flow.
  for (const f of kept) expect(limited.flows.get(limited.flows.rowOf(f.index)).index).toBe(f.index);
  const gone = all.find((f) => !kept.some((k) => k.index === f.index))!;
  expect(limited.flows.rowOf(gone.index)).toBe(-1);
});

test('evicted flows that come back start afresh, and the index finds the live ones', () => {
  const t = new FlowTable();
  const l4 = newL4Packet();
  const feed = (p: RawPacket): number => {
    expect(decodePacket(p, l4)).toBe(0);
    return t.add(p, l4);
  };
  for (let i = 0; i < 200; i++) feed(udp(2 + (i % 100), 1000 + i, 1000 + i));
  expect(t.size).toBe(200);
  expect(t.evict(1100, Infinity)).toBe(100); // last seen before t=1100
  expect(t.size).toBe(100);
  const before = [...t.all()];
  // Traffic on a kept flow lands on it; on an evicted one, on a new flow with a new id.
  const keptRow = feed(udp(2 + (150 % 100), 1150, 2000));
  expect(t.get(keptRow).index).toBe(150);
  expect(t.get(keptRow).clientToServer.packets).toBe(2);
  const newRow = feed(udp(2, 1000, 2001));
  expect(t.get(newRow).index).toBe(200);
  expect(t.get(newRow).clientToServer.packets).toBe(1);
  expect(t.size).toBe(101);
  expect(before.every((f) => t.get(t.rowOf(f.index)).firstSeen.sec === f.firstSeen.sec)).toBe(true);
});

test('the tracker enforces its limits as packets arrive', () => {
  const tracker = new FlowTracker({ maxFlows: 1000 });
  for (let i = 0; i < 5000; i++) tracker.onPacket(udp(2 + (i % 200), 1024 + i, 1000 + i));
  const s = tracker.stats();
  expect(s.flows).toBeLessThanOrEqual(1000 + 1024 + 1);
  expect(s.flows + s.flowsEvicted).toBe(5000);
  // The survivors are the most recent flows.
  const ids = [...tracker.flows.all()].map((f) => f.index);
  expect(Math.max(...ids)).toBe(4999);
  expect(Math.min(...ids)).toBe(5000 - s.flows);

  const aged = new FlowTracker({ flowMaxAgeSec: 60 });
  for (let i = 0; i < 70_000; i++) aged.onPacket(udp(2 + (i % 200), 1024 + (i % 60_000), 1000 + Math.floor(i / 100)));
  // Checked every 65,536 packets: at that moment flows idle for over 60 s were dropped.
  expect(aged.stats().flowsEvicted).toBeGreaterThan(0);
  const newest = 1000 + Math.floor(65_535 / 100);
  expect([...aged.flows.all()].filter((f) => f.index < 65_536).every((f) => f.lastSeen.sec >= newest - 60)).toBe(true);
});

test('a UDP conversation silent for longer than the idle timeout resumes as a new flow', () => {
  const t = new FlowTable({ udpIdleTimeoutSec: 120 });
  const l4 = newL4Packet();
  const feed = (p: RawPacket): number => {
    decodePacket(p, l4);
    return t.add(p, l4);
  };
  feed(udp(5, 4000, 1000));
  feed(udp(5, 4000, 1100)); // 100 s later: same flow
  feed(udp(5, 4000, 1221)); // 121 s of silence: new flow
  const flows = [...t.all()];
  expect(flows.map((f) => f.clientToServer.packets)).toEqual([2, 1]);
  expect(flows[1]!.firstSeen.sec).toBe(1221);
  // Without a timeout (tshark's numbering) it stays one conversation.
  const plain = new FlowTable();
  for (const ts of [1000, 1100, 1221]) {
    const p = udp(5, 4000, ts);
    decodePacket(p, l4);
    plain.add(p, l4);
  }
  expect(plain.size).toBe(1);
});
