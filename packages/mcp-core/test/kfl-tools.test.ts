import { type Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ToolRegistry, ToolDefinitionError, type ApiCall, type FilterPolicy } from '../src/index';
import { CapableSource, T0_US } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/** The kfl argument of the tools and apply_filter: what reaches the source, policy composition, errors, the reference. */


const connect = (source: CapableSource, filters?: FilterPolicy): Promise<Client> => connectInMemory(source, filters ? { registry: { filters } } : {});

afterEach(closeInMemory);

const call = async (client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> => (await client.callTool({ name, arguments: args })) as CallToolResult;
const text = (r: CallToolResult): string => (r.content[0] as { text: string }).text;
const queries = (s: CapableSource, method: string): unknown[] => s.calls.filter((c) => c.method === method).map((c) => c.args);

const mkCall = (i: number): ApiCall => ({
  id: `node-a/${i}/0`,
  node: 'node-a',
  protocol: 'http',
  timestamp_us: T0_US + i,
  elapsed_time_us: 10,
  src: { ip: '10.0.0.1', port: 40000 },
  dst: { ip: '10.0.0.2', port: 80 },
  method: 'GET',
  path: `/x/${i}`,
  url: `h/x/${i}`,
  status_code: 503,
  flow_id: 'node-a/1',
  cursor: `c${i}`,
});

test('every filtered tool sends the normalized filter to the source; legacy names come back with a note', async () => {
  const s = new CapableSource();
  s.apiCalls = [mkCall(1), mkCall(2)];
  const client = await connect(s);
  const r = await call(client, 'list_api_calls', { kfl: 'http && response.status >= 500', limit: 1 });
  expect(r.isError).toBeFalsy();
  expect(queries(s, 'listApiCalls')).toEqual([{ kfl: '(http && status_code >= 500)', limit: 1 }]);
  const out = r.structuredContent as { filter: { normalized: string; notes: string[] }; nextCursor: string };
  expect(out.filter.normalized).toBe('http && status_code >= 500');
  expect(out.filter.notes.join(' ')).toMatch(/response\.status.*status_code/);
  expect(text(r)).toMatch(/Note: .*status_code/);
  // The cursor carries the filter; a different one with it is refused.
  await call(client, 'list_api_calls', { cursor: out.nextCursor });
  expect(queries(s, 'listApiCalls')[1]).toEqual({ kfl: '(http && status_code >= 500)', after: 'c1', limit: 100 });
  await expect(call(client, 'list_api_calls', { cursor: out.nextCursor, kfl: 'dns' })).rejects.toThrow(/"kfl"/);

  await call(client, 'get_api_stats', { kfl: 'grpc && grpc_status != 0' });
  expect(queries(s, 'getApiStats')).toEqual([{ kfl: '(grpc && grpc_status != 0)' }]);
  await call(client, 'list_l4_flows', { kfl: 'tcp_flow && flow_local_bps > 5000000' });
  expect(s.flowQueries.map((q) => q.kfl)).toEqual(['(tcp_flow && flow_local_bps > 5000000)']);
  await call(client, 'get_l4_flow_summary', { kfl: 'udp_flow' });
  expect(s.summaryQueries.map((q) => q.kfl)).toEqual(['(udp_flow)']);
  await call(client, 'export_pcap', { kfl: 'http && status_code >= 500' });
  expect(queries(s, 'exportPcap')).toEqual([{ progress: false, query: { format: 'pcapng', kfl: '(http && status_code >= 500)' } }]);
  // No kfl and no policy: nothing is sent.
  await call(client, 'get_api_stats', {});
  expect(queries(s, 'getApiStats')[1]).toEqual({});
});

test('a bad filter is isError on "kfl" with its position and a suggestion, before the source is asked', async () => {
  const s = new CapableSource();
  const client = await connect(s);
  for (const tool of ['list_api_calls', 'get_api_stats', 'list_l4_flows', 'export_pcap', 'apply_filter']) {
    const r = await call(client, tool, { kfl: 'http && respone.status == 500' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/\(argument "kfl"\).*unknown field "respone.status" at 1:9; did you mean "status_code"\?/);
  }
  const r = await call(client, 'list_api_calls', { kfl: 'status_code == "200"' });
  expect(text(r)).toMatch(/"kfl".*1:\d+/);
  expect(s.calls).toEqual([]);
  expect(s.flowQueries).toEqual([]);
});

test('the configured policy: the global filter is ANDed into every query, macros are usable, and `true || x` cannot escape a restriction', async () => {
  const s = new CapableSource();
  const client = await connect(s, { global: 'http || grpc', macros: { server_errors: 'status_code >= 500' }, restrictions: ['dst.port == 80'] });
  await call(client, 'list_api_calls', { kfl: 'server_errors' });
  await call(client, 'list_api_calls', {});
  await call(client, 'list_api_calls', { kfl: 'true || dst.port == 443' });
  expect(queries(s, 'listApiCalls').map((q) => (q as { kfl: string }).kfl)).toEqual([
    '(dst.port == 80) && (http || grpc) && (status_code >= 500)',
    '(dst.port == 80) && (http || grpc)',
    '(dst.port == 80) && (http || grpc) && (true || dst.port == 443)',
  ]);
  expect(() => new ToolRegistry({ filters: { macros: { http: 'tcp' } } })).toThrow(ToolDefinitionError);
  expect(() => new ToolRegistry({ filters: { global: 'statuscode > 1' } })).toThrow(/global filter: unknown field/);
});

test('apply_filter: counts per node, the first matches, the filter as normalized and as applied, and a cursor into list_api_calls', async () => {
  const s = new CapableSource();
  s.apiCalls = [mkCall(1), mkCall(2), mkCall(3)];
  s.apiCounts = [
    { node: 'node-a', scanned: 10, matched: 3, errors: 0 },
    { node: 'node-b', scanned: 5, matched: 0, errors: 1, last_error: 'no such key: x' },
  ];
  const client = await connect(s, { global: 'http' });
  const r = await call(client, 'apply_filter', { kfl: 'request.path.startsWith("/x")', limit: 2, start: '2024-05-01T14:00:00Z' });
  expect(r.isError).toBeFalsy();
  const out = r.structuredContent as { normalized: string; applied: string; notes: string[]; matched: number; counts: unknown[]; calls: { id: string }[]; nextCursor?: string };
  expect(out).toMatchObject({ normalized: 'path.startsWith("/x")', applied: '(http) && (path.startsWith("/x"))', matched: 3 });
  expect(out.notes.join(' ')).toMatch(/request\.path.*path/);
  expect(out.calls.map((c) => c.id)).toEqual(['node-a/1/0', 'node-a/2/0']);
  const since = Date.UTC(2024, 4, 1, 14) * 1000;
  expect(queries(s, 'countApiCalls')).toEqual([{ since_us: since, kfl: '(http) && (path.startsWith("/x"))' }]);
  expect(queries(s, 'listApiCalls')[0]).toEqual({ since_us: since, kfl: '(http) && (path.startsWith("/x"))', limit: 2 });
  await call(client, 'list_api_calls', { cursor: out.nextCursor });
  expect(queries(s, 'listApiCalls')[1]).toEqual({ since_us: since, kfl: '(http) && (path.startsWith("/x"))', after: 'c2', limit: 100 });
  expect(text(r)).toMatch(/node-a: 3 of 10; node-b: 0 of 5, 1 evaluation errors/);
});

test('the KFL2 reference is a resource, generated from the catalogue', async () => {
  const client = await connect(new CapableSource());
  const r = await client.readResource({ uri: 'kubeshark://kfl/reference' });
  const md = (r.contents[0] as { text: string; mimeType: string }).text;
  expect(r.contents[0]).toMatchObject({ mimeType: 'text/markdown' });
  for (const name of ['status_code', 'dns_questions', 'src.pod.namespace', 'kafka_request_summary', 'flow_local_bps', 'startsWith']) expect(md).toContain(name);
});
