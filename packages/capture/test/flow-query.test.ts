import { capturePath, loadGolden } from '@kubeshark-mcp/testkit';
import {
  FlowQueryError,
  FlowTracker,
  aggregateByIpPair,
  orderFlows,
  percentilesNs,
  readCaptureFile,
  selectFlows,
  summarizeFlows,
  timestampUs,
  formatIpv6,
  parseIp,
} from '../src';

async function track(...captures: string[]): Promise<FlowTracker> {
  const t = new FlowTracker();
  for (const c of captures) await readCaptureFile(capturePath(c), t.onPacket);
  return t;
}

test('percentiles are nearest-rank over the values', () => {
  expect(percentilesNs([])).toEqual({ count: 0, p50Us: 0, p90Us: 0, p99Us: 0 });
  expect(percentilesNs([5000])).toEqual({ count: 1, p50Us: 5, p90Us: 5, p99Us: 5 });
  const ten = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1].map((x) => x * 1000);
  expect(percentilesNs(ten)).toEqual({ count: 10, p50Us: 5, p90Us: 9, p99Us: 10 });
});

test('filters select exactly the flows tshark lists for an address, a port and a protocol', async () => {
  const capture = 'ndpi/http_ipv6.pcap';
  const t = await track(capture);
  const g = loadGolden(capture);
  const all = [...g.tcp.map((s) => ({ ...s, p: 'tcp' })), ...g.udp.map((s) => ({ ...s, p: 'udp' }))];
  const ip = '2a00:1450:4001:803::1017';
  const has = (s: { a: string; b: string }, x: string): boolean => s.a.startsWith(`${x}:`) || s.b.startsWith(`${x}:`);
  expect(selectFlows(t.flows, { ip })).toHaveLength(all.filter((s) => has(s, ip)).length);
  // The same address written another way selects the same flows.
  expect(selectFlows(t.flows, { ip: '2a00:1450:4001:0803:0:0:0:1017' })).toHaveLength(all.filter((s) => has(s, ip)).length);
  expect(selectFlows(t.flows, { port: 443, protocol: 'udp' })).toHaveLength(g.udp.filter((s) => s.a.endsWith(':443') || s.b.endsWith(':443')).length);
  expect(selectFlows(t.flows, { protocol: 'tcp' })).toHaveLength(g.tcp.length);
  expect(() => selectFlows(t.flows, { ip: '2a00::1::2' })).toThrow(FlowQueryError);
});

test('time windows keep flows that overlap them', async () => {
  const t = await track('ndpi/http_ipv6.pcap');
  const flows = selectFlows(t.flows);
  const mid = flows[5]!;
  const since = timestampUs(mid.firstSeen);
  const until = timestampUs(mid.lastSeen);
  const inWindow = selectFlows(t.flows, { sinceUs: since, untilUs: until });
  const expected = flows.filter((f) => timestampUs(f.lastSeen) >= since && timestampUs(f.firstSeen) <= until);
  expect(inWindow.map((f) => f.index)).toEqual(expected.map((f) => f.index));
  expect(inWindow.length).toBeLessThan(flows.length);
});

test('ordering is deterministic: ties fall back to first appearance', async () => {
  const t = await track('ndpi/http_ipv6.pcap');
  const byBytes = orderFlows(selectFlows(t.flows), 'bytes');
  for (let i = 1; i < byBytes.length; i++) {
    const a = byBytes[i - 1]!;
    const b = byBytes[i]!;
    const ba = a.clientToServer.bytes + a.serverToClient.bytes;
    const bb = b.clientToServer.bytes + b.serverToClient.bytes;
    expect(ba > bb || (ba === bb && a.index < b.index)).toBe(true);
  }
  const recent = orderFlows(selectFlows(t.flows), 'recent');
  expect(timestampUs(recent[0]!.lastSeen)).toBe(Math.max(...recent.map((f) => timestampUs(f.lastSeen))));
});

test('ip-pair groups add up to the flows they hold', async () => {
  const t = await track('ndpi/http_ipv6.pcap', 'ndpi/pgsql.pcap');
  const flows = selectFlows(t.flows);
  const groups = aggregateByIpPair(flows);
  expect(groups.reduce((n, g) => n + g.flows, 0)).toBe(flows.length);
  const sum = (xs: { clientToServer: { bytes: number }; serverToClient: { bytes: number } }[]): number => xs.reduce((n, x) => n + x.clientToServer.bytes + x.serverToClient.bytes, 0);
  expect(sum(groups)).toBe(sum(flows));
  for (const g of groups) {
    const members = flows.filter((f) => f.client.ip === g.client.ip && f.server.ip === g.server.ip);
    expect(g.flows).toBe(members.length);
    expect(g.handshakeServer).toEqual(percentilesNs(members.flatMap((f) => (f.tcpHandshakeServerNs === undefined ? [] : [f.tcpHandshakeServerNs]))));
  }
});

test('summary top talkers count each address once per flow, sent and received', async () => {
  const t = await track('ndpi/pgsql.pcap');
  const flows = selectFlows(t.flows);
  const s = summarizeFlows(flows, 3);
  expect(s.totalFlows).toBe(flows.length);
  expect(s.topByBytes.length).toBeLessThanOrEqual(3);
  const top = s.topByBytes[0]!;
  const involved = flows.filter((f) => f.client.ip === top.ip || f.server.ip === top.ip);
  expect(top.flows).toBe(involved.length);
  expect(top.txBytes + top.rxBytes).toBe(involved.reduce((n, f) => n + f.clientToServer.bytes + f.serverToClient.bytes, 0));
});

test('IPv6 text follows RFC 5952', () => {
  const w = (s: string) => parseIp(s)!;
  const fmt = (s: string): string => {
    const p = w(s);
    return formatIpv6(p.w0, p.w1, p.w2, p.w3);
  };
  expect(fmt('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
  expect(fmt('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1'); // a single zero group stays
  expect(fmt('2001:0:0:1:0:0:0:1')).toBe('2001:0:0:1::1'); // the longest run is compressed
  expect(fmt('::')).toBe('::');
  expect(fmt('::ffff:192.0.2.1')).toBe('::ffff:c000:201');
  expect(parseIp('1.2.3.256')).toBeUndefined();
  expect(parseIp('1:2:3:4:5:6:7:8:9')).toBeUndefined();
});

test('non-IP and malformed packets are counted by reason, never thrown', async () => {
  const arp = await track('zeek/linuxsll-arp.pcap');
  expect(arp.stats().skipped).toEqual([{ reason: 'non-ip', count: loadGolden('zeek/linuxsll-arp.pcap').frames }]);
  // A frame cut inside its IPv4 header.
  const t = new FlowTracker();
  const buf = Buffer.alloc(14 + 10);
  buf.writeUInt16BE(0x0800, 12);
  buf[14] = 0x45;
  t.onPacket({ buf, offset: 0, capLen: buf.length, origLen: 60, tsSec: 1, tsNsec: 0, linkType: 1, interfaceId: 0, frame: 1 });
  t.onPacket({ buf, offset: 0, capLen: buf.length, origLen: 60, tsSec: 1, tsNsec: 0, linkType: 147, interfaceId: 0, frame: 2 });
  expect(t.stats().errors).toEqual([
    { reason: 'unsupported-link-type', count: 1 },
    { reason: 'truncated-ip-header', count: 1 },
  ]);
  expect(t.flows.size).toBe(0);
});
