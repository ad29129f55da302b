import { RttSketch } from '@kubeshark-mcp/capture';
import type { Flow, FlowGroup, FlowSummary, Percentiles } from '@kubeshark-mcp/mcp-core';
import { Heap, decodeCompositeCursor, encodeCompositeCursor, mergeFlows, mergeGroups, mergePercentiles, mergeSummaries, nodeKey } from '../src/merge';

/** The pure merges of several workers' answers, on hand-made inputs. */

const dir = (bytes: number, packets = 1) => ({ packets, bytes, payload_bytes: 0 });

function flow(node: string, index: number, bytes: number, firstUs = 0): Flow {
  return {
    id: `${node}/${index}`,
    node,
    protocol: 'tcp',
    client: { ip: '10.0.0.1', port: 1000 + index },
    server: { ip: '10.0.0.2', port: 80 },
    client_to_server: dir(bytes),
    server_to_client: dir(0),
    first_seen_us: firstUs,
    last_seen_us: firstUs,
    state: 'closed',
    syn_count: 1,
    fin_count: 1,
    rst_count: 0,
  };
}

const exact = (values: number[]): Percentiles => {
  const v = [...values].sort((a, b) => a - b);
  const at = (p: number): number => v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]!;
  const s = new RttSketch();
  for (const x of v) s.add(x);
  return { count: v.length, p50_us: at(50), p90_us: at(90), p99_us: at(99), sketch: s.toBytes() };
};

function group(key: string, flows: number, bytes: number, hs: number[]): FlowGroup {
  return {
    key,
    client: { ip: key.split(' -> ')[0]! },
    server: { ip: key.split(' -> ')[1]! },
    flows,
    tcp_flows: flows,
    udp_flows: 0,
    client_to_server: { ...dir(bytes, flows), tcp: { retransmissions: 1, fast_retransmissions: 0, spurious_retransmissions: 0, out_of_order: 0, duplicate_acks: 0, zero_windows: 0, keep_alives: 0, window_full: 0, lost_segments: 0, acked_unseen_segments: 0 } },
    server_to_client: dir(0),
    first_seen_us: 100,
    last_seen_us: 200,
    tcp_handshake_client: exact(hs),
    tcp_handshake_server: exact(hs),
  };
}

test('mergeFlows: the global page in order, ties by node then flow index', () => {
  const a = [flow('node-a', 2, 50), flow('node-a', 10, 50), flow('node-a', 3, 10)];
  const b = [flow('node-b', 1, 70), flow('node-b', 0, 50)];
  const all = mergeFlows([a, b], 'bytes', 0, 10).map((f) => f.id);
  expect(all).toEqual(['node-b/1', 'node-a/2', 'node-a/10', 'node-b/0', 'node-a/3']);
  // Every page is a slice of the same total order.
  for (let limit = 1; limit <= 5; limit++) {
    const pages: string[] = [];
    for (let off = 0; off < all.length; off += limit) pages.push(...mergeFlows([a, b], 'bytes', off, limit).map((f) => f.id));
    expect(pages).toEqual(all);
  }
  expect(mergeFlows([a, b], 'oldest', 0, 2).map((f) => f.id)).toEqual(['node-a/2', 'node-a/3']);
});

test('mergeGroups: a shared key adds counters and merges sketches; a one-node group keeps its exact percentiles', () => {
  const hsA = [100, 200, 300, 400];
  const hsB = [1000, 1100, 1200];
  const first = group('1.1.1.1 -> 2.2.2.2', 4, 400, hsA);
  const merged = mergeGroups([[first, group('3.3.3.3 -> 4.4.4.4', 1, 50, [777])], [group('1.1.1.1 -> 2.2.2.2', 3, 300, hsB)]], 'bytes');
  expect(merged.map((g) => g.key)).toEqual(['1.1.1.1 -> 2.2.2.2', '3.3.3.3 -> 4.4.4.4']);
  const [shared, single] = merged as [FlowGroup, FlowGroup];
  expect(shared).toMatchObject({ flows: 7, tcp_flows: 7, client_to_server: { bytes: 700, packets: 7, tcp: { retransmissions: 2 } } });
  const all = [...hsA, ...hsB];
  const want = exact(all);
  expect(shared.tcp_handshake_server.count).toBe(7);
  for (const k of ['p50_us', 'p90_us', 'p99_us'] as const) expect(Math.abs(shared.tcp_handshake_server[k] - want[k])).toBeLessThanOrEqual(0.01 * want[k]);
  expect(single.tcp_handshake_server).toMatchObject({ count: 1, p50_us: 777, p90_us: 777, p99_us: 777 });
  // The inputs were not modified.
  expect(first).toMatchObject({ flows: 4, client_to_server: { bytes: 400, tcp: { retransmissions: 1 } }, tcp_handshake_server: { count: 4 } });
});

test('mergePercentiles: none, one exact, several from sketches', () => {
  expect(mergePercentiles([])).toEqual({ count: 0, p50_us: 0, p90_us: 0, p99_us: 0 });
  const one = exact([5, 6, 7]);
  expect(mergePercentiles([{ count: 0, p50_us: 0, p90_us: 0, p99_us: 0 }, one])).toEqual(one);
  expect(mergePercentiles([exact([10]), exact([20]), exact([30])])).toMatchObject({ count: 3 });
});

test('mergeSummaries: totals add, talkers are recomputed over the union, unique counts are summed', () => {
  const empty = { count: 0, p50_us: 0, p90_us: 0, p99_us: 0 };
  const part = (over: Partial<Omit<FlowSummary, 'nodes'>>): Omit<FlowSummary, 'nodes'> => ({
    total_flows: 1,
    total_packets: 1,
    total_bytes: 1,
    tcp: { flows: 1, packets: 1, bytes: 1 },
    udp: { flows: 0, packets: 0, bytes: 0 },
    unique_clients: 1,
    unique_servers: 1,
    top_by_bytes: [],
    top_by_packets: [],
    tcp_handshake_client: empty,
    tcp_handshake_server: empty,
    first_seen_us: 0,
    last_seen_us: 0,
    ...over,
  });
  const t = (ip: string, bytes: number) => ({ ip, tx_packets: 1, rx_packets: 0, tx_bytes: bytes, rx_bytes: 0, flows: 1 });
  const m = mergeSummaries(
    [
      part({ top_by_bytes: [t('10.0.0.9', 100), t('10.0.0.1', 60)], first_seen_us: 50, last_seen_us: 60, unique_clients: 2 }),
      part({ top_by_bytes: [t('10.0.0.1', 60), t('10.0.0.2', 90)], first_seen_us: 40, last_seen_us: 70, unique_clients: 3 }),
      part({ total_flows: 0, first_seen_us: 0, last_seen_us: 0 }),
    ],
    2,
  );
  expect(m.top_by_bytes.map((x) => [x.ip, x.tx_bytes, x.flows])).toEqual([
    ['10.0.0.1', 120, 2],
    ['10.0.0.9', 100, 1],
  ]);
  expect(m).toMatchObject({ total_flows: 2, tcp: { flows: 3 }, unique_clients: 6, first_seen_us: 40, last_seen_us: 70 });
  expect(m.by_namespace).toBeUndefined();

  // Namespaces: counts add by namespace and by pair, biggest by bytes first, cut to top.
  const ns = mergeSummaries(
    [
      part({ by_namespace: [{ namespace: 'shop', flows: 2, packets: 20, bytes: 2000 }, { namespace: '', flows: 1, packets: 5, bytes: 300 }], cross_namespace: [{ src_namespace: 'shop', dst_namespace: 'payments', flows: 1, bytes: 500 }] }),
      part({ by_namespace: [{ namespace: 'payments', flows: 3, packets: 30, bytes: 2500 }, { namespace: 'shop', flows: 1, packets: 10, bytes: 1000 }], cross_namespace: [{ src_namespace: 'shop', dst_namespace: 'payments', flows: 2, bytes: 700 }, { src_namespace: '', dst_namespace: 'shop', flows: 1, bytes: 100 }] }),
      part({}),
    ],
    2,
  );
  expect(ns.by_namespace).toEqual([
    { namespace: 'shop', flows: 3, packets: 30, bytes: 3000 },
    { namespace: 'payments', flows: 3, packets: 30, bytes: 2500 },
  ]);
  expect(ns.cross_namespace).toEqual([
    { src_namespace: 'shop', dst_namespace: 'payments', flows: 3, bytes: 1200 },
    { src_namespace: '', dst_namespace: 'shop', flows: 1, bytes: 100 },
  ]);
});

test('composite cursors round-trip any node name and worker cursor; anything else is refused', () => {
  const p = new Map([
    ['node-b', '1714.5_3'],
    ['node,a=x', 'c=,d'],
  ]);
  const text = encodeCompositeCursor(p);
  expect(decodeCompositeCursor(text)).toEqual(p);
  expect(decodeCompositeCursor(encodeCompositeCursor(new Map()))).toEqual(new Map());
  for (const bad of ['', 'v2,a=b', 'v1,a', 'v1,=x', 'v1,a=%E0%A4%A', 'z1,', 'z1,!!', 'z1,AAAA', `z1,${Buffer.from('not deflate').toString('base64url')}`]) expect(decodeCompositeCursor(bad)).toBeUndefined();
});

test('a composite cursor over 100 nodes fits the tools\' 4096-character cursors', () => {
  const keys = new Set<string>();
  const p = new Map<string, string>();
  for (let i = 0; i < 100; i++) {
    const key = nodeKey(`ip-10-0-${i}-17.eu-west-1.compute.internal`);
    expect(key).toMatch(/^[A-Za-z0-9_-]{8}$/);
    keys.add(key);
    p.set(key, `1714573200.${String(123456 + i)}_${1000 + i}`);
  }
  expect(keys.size).toBe(100);
  expect(decodeCompositeCursor(encodeCompositeCursor(p))).toEqual(p);
  // As the list_api_calls tool wraps it: JSON, then base64url.
  const toolCursor = Buffer.from(JSON.stringify({ v: 1, t: 'list_api_calls', q: { after: encodeCompositeCursor(p) }, o: 1000 })).toString('base64url');
  expect(toolCursor.length).toBeLessThan(4096);
});

test('Heap pops in order', () => {
  const h = new Heap<number>((a, b) => a < b);
  const values = Array.from({ length: 200 }, (_, i) => (i * 7919) % 211);
  for (const v of values) h.push(v);
  const out: number[] = [];
  while (h.size) out.push(h.pop()!);
  expect(out).toEqual([...values].sort((a, b) => a - b));
});
