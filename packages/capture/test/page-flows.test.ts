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
