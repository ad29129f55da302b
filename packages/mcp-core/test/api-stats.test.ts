import { type Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { TrafficSourceError, type ApiStatsGroup } from '../src/index';
import { CapableSource, T0_US } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/** get_api_stats over an in-memory source: arguments to query, ordering, paging, budget, errors. */

const group = (endpoint: string, requests: number, failures: number, p99: number): ApiStatsGroup => ({
  service: '10.0.0.2:80',
  protocol: 'http',
  method: 'GET',
  endpoint,
  requests,
  failures,
  unanswered: 0,
  statuses: [
    { status_code: 200, count: requests - failures },
    ...(failures ? [{ status_code: 503, count: failures }] : []),
  ],
  latency: { count: requests, p50_us: p99 / 10, p90_us: p99 / 2, p99_us: p99 },
  first_us: T0_US,
  last_us: T0_US + 1000,
});


const connect = (source: CapableSource, maxResultTokens?: number): Promise<Client> => connectInMemory(source, maxResultTokens ? { registry: { maxResultTokens } } : {});

afterEach(closeInMemory);

interface Out {
  groups: { endpoint: string; requests: number; failures: number; error_rate: number; latency_p99_us: number; first_seen: string }[];
  total_groups: number;
  entries: number;
  returned: number;
  truncated: boolean;
  nextCursor?: string;
  hint?: string;
}

const call = async (client: Client, args: Record<string, unknown>): Promise<CallToolResult> => (await client.callTool({ name: 'get_api_stats', arguments: args })) as CallToolResult;

function source(): CapableSource {
  const s = new CapableSource();
  s.apiStats = {
    groups: [group('/a', 10, 0, 900), group('/b', 50, 5, 300), group('/c', 20, 10, 5000), group('/d', 50, 1, 100)],
    entries: 130,
    nodes: [{ node: 'node-a', state: 'ok' }],
  };
  return s;
}

test('arguments become the source query; groups come back by requests, ties by endpoint; error_rate is failures / requests', async () => {
  const s = source();
  const client = await connect(s);
  const r = await call(client, { protocol: 'http', start: '2024-05-01T14:00:00Z', end: 1714575600000 });
  expect(r.isError).toBeFalsy();
  expect(s.calls.filter((c) => c.method === 'getApiStats').map((c) => c.args)).toEqual([{ protocol: 'http', since_us: Date.UTC(2024, 4, 1, 14) * 1000, until_us: 1714575600000 * 1000 }]);
  const out = r.structuredContent as unknown as Out;
  expect(out.groups.map((g) => [g.endpoint, g.requests, g.error_rate])).toEqual([
    ['/b', 50, 0.1],
    ['/d', 50, 0.02],
    ['/c', 20, 0.5],
    ['/a', 10, 0],
  ]);
  expect(out).toMatchObject({ total_groups: 4, entries: 130, returned: 4, truncated: false });
  expect(out.groups[0]!.first_seen).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  const text = (r.content[0] as { text: string }).text;
  expect(text).toMatch(/^4 groups over 130 API calls, by requests/);
  expect(text).toContain('10.0.0.2:80 http GET /c: 20 calls, 10 failed (50.00%)');
});

test('order_by error_rate, failures and p99; one group per page visits each once in order', async () => {
  const client = await connect(source());
  const order = async (order_by: string): Promise<string[]> => ((await call(client, { order_by })).structuredContent as unknown as Out).groups.map((g) => g.endpoint);
  expect(await order('error_rate')).toEqual(['/c', '/b', '/d', '/a']);
  expect(await order('failures')).toEqual(['/c', '/b', '/d', '/a']);
  expect(await order('p99')).toEqual(['/c', '/a', '/b', '/d']);
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 10; i++) {
    const out = (await call(client, { order_by: 'p99', limit: 1, ...(cursor ? { cursor } : {}) })).structuredContent as unknown as Out;
    seen.push(...out.groups.map((g) => g.endpoint));
    expect(out.truncated).toBe(out.nextCursor !== undefined);
    cursor = out.nextCursor;
    if (!cursor) break;
  }
  expect(seen).toEqual(['/c', '/a', '/b', '/d']);
});

test('a result over the output budget is cut with a hint and a cursor', async () => {
  const s = new CapableSource();
  s.apiStats = { groups: Array.from({ length: 400 }, (_, i) => group(`/endpoint/with/a/long/name/${String(i).padStart(4, '0')}`, 1000 - i, i % 7, 100 + i)), entries: 1, nodes: [{ node: 'node-a', state: 'ok' }] };
  const client = await connect(s, 2000);
  const out = (await call(client, { limit: 500 })).structuredContent as unknown as Out;
  expect(out.returned).toBeLessThan(400);
  expect(out.returned).toBeGreaterThan(0);
  expect(out.truncated).toBe(true);
  expect(out.hint).toMatch(/output budget/);
  const next = (await call(client, { limit: 500, cursor: out.nextCursor })).structuredContent as unknown as Out;
  expect(next.groups[0]!.endpoint).toBe(`/endpoint/with/a/long/name/${String(out.returned).padStart(4, '0')}`);
});

test('bad arguments and source errors come back as isError naming the argument; a forged cursor is a protocol error', async () => {
  const s = source();
  const client = await connect(s);
  for (const [args, re] of [
    [{ order_by: 'speed' }, /"order_by"/],
    [{ protocol: 'smtp' }, /"protocol"/],
    [{ limit: 0 }, /"limit"/],
    [{ start: '2024-05-01T15:00:00Z', end: '2024-05-01T14:00:00Z' }, /"end" is before "start"/],
  ] as const) {
    const r = await call(client, args);
    expect(r.isError).toBe(true);
    expect((r.content[0] as { text: string }).text).toMatch(re);
  }
  s.failures.set('getApiStats', new TrafficSourceError('invalid_argument', 'until_us is before since_us', { field: 'until_us' }));
  const r = await call(client, {});
  expect(r.isError).toBe(true);
  expect((r.content[0] as { text: string }).text).toMatch(/"end"/);
  await expect(call(client, { cursor: 'not-a-cursor' })).rejects.toThrow(/Invalid cursor/);
});
