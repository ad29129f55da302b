import { RttSketch } from '@kubeshark-mcp/capture';
import { mergeApiStats, type ProtoApiStats } from '../src/api-stats-merge';

/** Merging the API statistics of several workers: sums add, percentiles come from merged sketches. */

function nodeStats(node: string, latencies: number[], statuses: number[], extra: Partial<ProtoApiStats['groups'][number]> = {}): ProtoApiStats {
  const sketch = new RttSketch();
  for (const v of latencies) sketch.add(v);
  const sorted = [...latencies].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
  const counts = new Map<number, number>();
  for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
  return {
    node,
    entries: statuses.length,
    groups: [
      {
        service: '10.0.0.9:80',
        dst: { ip: '10.0.0.9', port: 80, name: '', namespace: '', pod: '', service: '', node: '', unresolved: '' },
        protocol: 'http',
        method: 'GET',
        endpoint: '/users/:id',
        requests: statuses.length,
        failures: statuses.filter((s) => s >= 400).length,
        unanswered: statuses.filter((s) => s === 0).length,
        statuses: [...counts].map(([status_code, count]) => ({ status_code, count })),
        latency: { count: latencies.length, p50_us: rank(50), p90_us: rank(90), p99_us: rank(99), sketch: Buffer.from(sketch.toBytes()) },
        src: null,
        first_us: 1000,
        last_us: 2000,
        ...extra,
      },
    ],
  };
}

test('one node: its exact percentiles pass through unchanged', () => {
  const a = nodeStats('a', [100, 200, 300], [200, 200, 500]);
  const m = mergeApiStats([a]);
  expect(m.entries).toBe(3);
  expect(m.groups).toHaveLength(1);
  expect(m.groups[0]).toMatchObject({ requests: 3, failures: 1, latency: { count: 3, p50_us: 200, p90_us: 300, p99_us: 300 } });
});

test('two nodes: counts and statuses add; percentiles of the merged sketch are within 1% of the exact percentiles over all values', () => {
  // Very different distributions: averaging the two nodes' percentiles would be far off.
  const fast = Array.from({ length: 900 }, (_, i) => 100 + (i % 50));
  const slow = Array.from({ length: 100 }, (_, i) => 50_000 + i * 100);
  const a = nodeStats('a', fast, [...Array(899).fill(200), 0]);
  const b = nodeStats('b', slow, [...Array(90).fill(200), ...Array(10).fill(503)], { first_us: 500, last_us: 3000 });
  const m = mergeApiStats([a, b]);
  expect(m.entries).toBe(1000);
  expect(m.groups).toHaveLength(1);
  const g = m.groups[0]!;
  expect(g).toMatchObject({ requests: 1000, failures: 10, unanswered: 1, first_us: 500, last_us: 3000 });
  expect(g.statuses).toEqual([
    { status_code: 200, count: 989 },
    { status_code: 503, count: 10 },
    { status_code: 0, count: 1 },
  ]);
  const all = [...fast, ...slow].sort((x, y) => x - y);
  const exact = (p: number): number => all[Math.ceil((p / 100) * all.length) - 1]!;
  expect(g.latency.count).toBe(1000);
  for (const [p, got] of [
    [50, g.latency.p50_us],
    [90, g.latency.p90_us],
    [99, g.latency.p99_us],
  ] as const) {
    expect(Math.abs(got - exact(p)) / exact(p)).toBeLessThanOrEqual(0.0101);
  }
  // The average of the nodes' p99s would be ~30 ms; the true p99 is ~59 ms.
  expect(g.latency.p99_us).toBeGreaterThan(55_000);
});

test('different endpoints stay apart', () => {
  const a = nodeStats('a', [1], [200]);
  const b = nodeStats('b', [2], [200], { endpoint: '/orders' });
  expect(mergeApiStats([a, b]).groups.map((g) => g.endpoint).sort()).toEqual(['/orders', '/users/:id']);
});
