import { decodePacket, FlowTable, newL4Packet, orderFlows, pageFlows, readCaptureFile, selectFlows, type FlowFilter, type FlowOrder } from '../src';
import { capturePath } from '@kubeshark-mcp/testkit';

/** pageFlows (columns, only the page materialised) against selectFlows + orderFlows + slice on real captures. */

const CAPTURES = ['zeek/http_1000-requests-one-dropped-response.pcap.gz', 'ndpi/http.pcapng', 'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', 'zeek/tcp_retransmit-fast009.pcap', 'ndpi/kafka.pcapng', 'grpc-go-book/grpc_Unary.pcapng', 'ndpi/dns.pcap'];

async function tableOf(captures: string[]): Promise<FlowTable> {
  const table = new FlowTable();
  const l4 = newL4Packet();
  for (const c of captures) await readCaptureFile(capturePath(c), (p) => decodePacket(p, l4) === 0 && table.add(p, l4));
  return table;
}

test('every order, filter, offset and limit gives the page and total of the reference path', async () => {
  const table = await tableOf(CAPTURES);
  expect(table.size).toBeGreaterThan(20);
  const all = selectFlows(table);
  const times = all.map((f) => f.firstSeen.sec * 1e6).sort((a, b) => a - b);
  const mid = times[Math.floor(times.length / 2)]!;
  const filters: FlowFilter[] = [{}, { protocol: 'tcp' }, { protocol: 'udp' }, { sinceUs: mid }, { untilUs: mid }, { sinceUs: mid, protocol: 'tcp' }, { port: 53 }, { ip: all[3]!.client.ip }];
  for (const order of ['bytes', 'packets', 'recent', 'oldest'] as FlowOrder[]) {
    for (const filter of filters) {
      const reference = orderFlows(selectFlows(table, filter), order);
      for (const [offset, limit] of [
        [0, 5],
        [3, 7],
        [0, 1000],
        [reference.length, 5],
      ] as const) {
        const page = pageFlows(table, filter, order, offset, limit);
        expect({ order, filter, offset, total: page.total, ids: page.flows.map((f) => f.index) }).toEqual({ order, filter, offset, total: reference.length, ids: reference.slice(offset, offset + limit).map((f) => f.index) });
      }
    }
  }
});

/** One IPv4/UDP datagram in Ethernet from 10.1.x.y:port to 10.2.0.1:53 with `payload` bytes. */
function udp(i: number, payload: number, tsSec: number): Parameters<FlowTable['add']>[0] {
  const buf = Buffer.alloc(14 + 20 + 8 + payload);
  buf.writeUInt16BE(0x0800, 12);
  buf[14] = 0x45;
  buf.writeUInt16BE(20 + 8 + payload, 16);
  buf[22] = 64;
  buf[23] = 17;
  buf.writeUInt32BE(((10 << 24) | (1 << 16) | (((i >> 8) & 0xff) << 8) | (i & 0xff)) >>> 0, 26);
  buf.writeUInt32BE(((10 << 24) | (2 << 16) | 1) >>> 0, 30);
  buf.writeUInt16BE(20_000 + (i % 40_000), 34);
  buf.writeUInt16BE(53, 36);
  buf.writeUInt16BE(8 + payload, 38);
  return { buf, offset: 0, capLen: buf.length, origLen: buf.length, tsSec, tsNsec: 0, linkType: 1, interfaceId: 0, frame: i + 1 };
}

test('a first page of many flows with many ties (the bounded top-k path) is the reference page', () => {
  const table = new FlowTable();
  const l4 = newL4Packet();
  // 3,000 flows whose sizes repeat every 7 and whose times every 13: ties in every order.
  for (let i = 0; i < 3000; i++) {
    const p = udp(i, 10 + (i % 7) * 3, 1_700_000_000 + (i % 13));
    expect(decodePacket(p, l4)).toBe(0);
    table.add(p, l4);
  }
  expect(table.size).toBe(3000);
  for (const order of ['bytes', 'packets', 'recent', 'oldest'] as FlowOrder[]) {
    const reference = orderFlows(selectFlows(table), order);
    for (const [offset, limit] of [
      [0, 1],
      [0, 50],
      [50, 50],
      [0, 700],
      [2999, 5],
    ] as const) {
      const page = pageFlows(table, {}, order, offset, limit);
      expect({ order, offset, total: page.total, ids: page.flows.map((f) => f.index) }).toEqual({ order, offset, total: 3000, ids: reference.slice(offset, offset + limit).map((f) => f.index) });
    }
  }
  // Eviction moves rows (ids stay): ties still go by first appearance.
  expect(table.evict(1_700_000_000 + 5, 3000)).toBeGreaterThan(0);
  for (const order of ['bytes', 'packets', 'recent', 'oldest'] as FlowOrder[]) {
    const reference = orderFlows(selectFlows(table), order);
    const page = pageFlows(table, { protocol: 'udp' }, order, 10, 40);
    expect({ order, total: page.total, ids: page.flows.map((f) => f.index) }).toEqual({ order, total: table.size, ids: reference.slice(10, 50).map((f) => f.index) });
  }
});

test('sort keys are written for every row and need room for them', () => {
  const table = new FlowTable();
  const l4 = newL4Packet();
  for (let i = 0; i < 5; i++) {
    const p = { ...udp(i, 10 * (i + 1), 1_700_000_000 + i), tsNsec: 1500 * i }; // sub-microsecond parts, cut as lastSeenUs cuts them
    decodePacket(p, l4);
    table.add(p, l4);
  }
  const keys = new Float64Array(6).fill(7);
  table.sortKeys('bytes', keys);
  expect([...keys]).toEqual([...[0, 1, 2, 3, 4].map((i) => -table.bytesOf(i)), 7]);
  table.sortKeys('recent', keys);
  expect([...keys.subarray(0, 5)]).toEqual([0, 1, 2, 3, 4].map((i) => -table.lastSeenUs(i)));
  table.sortKeys('oldest', keys);
  expect([...keys.subarray(0, 5)]).toEqual([0, 1, 2, 3, 4].map((i) => table.firstSeenUs(i)));
  expect(() => table.sortKeys('packets', new Float64Array(4))).toThrow('sortKeys needs room for 5 keys (got 4)');
});
