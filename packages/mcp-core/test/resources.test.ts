import { type Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError, ResourceUpdatedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type ApiCall, type TrafficSource, type WorkloadList } from '../src/index';
import { CapableSource, MemorySource, T0_US, ipPairGroup, summaryWithHandshake, tcpFlow, udpFlow } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/** Resources, templates, subscriptions and completion over the SDK client. */


const connect = (source: TrafficSource, liveIntervalMs = 20): Promise<Client> => connectInMemory(source, { liveIntervalMs });

afterEach(closeInMemory);

const mkCall = (i: number): ApiCall => ({
  id: `node-a/${i}/0`,
  node: 'node-a',
  protocol: 'http',
  timestamp_us: T0_US + i * 1_000_000,
  elapsed_time_us: 1000 + i,
  src: { ip: '10.0.0.1', port: 40000 + i },
  dst: { ip: '10.0.0.2', port: 80 },
  method: 'GET',
  path: `/item/${i}`,
  url: `shop/item/${i}`,
  status_code: i % 5 === 0 ? 503 : 200,
  flow_id: `node-a/${i}`,
  cursor: `c${i}`,
});

/** A CapableSource with API calls that pages them by cursor and window, and entry boundaries that follow them. */
class TrafficSourceWithCalls extends CapableSource {
  constructor(n: number) {
    super([], [ipPairGroup], summaryWithHandshake(400));
    this.apiCalls = Array.from({ length: n }, (_, i) => mkCall(i));
    this.sync();
  }
  sync(): void {
    const last = this.apiCalls[this.apiCalls.length - 1];
    this.boundaries = { boundaries: last ? [{ node: 'node-a', entries: { oldest_us: this.apiCalls[0]!.timestamp_us, newest_us: last.timestamp_us } }] : [], nodes: [{ node: 'node-a', state: 'ok' }] };
  }
  override async listApiCalls(q: Parameters<CapableSource['listApiCalls']>[0]): ReturnType<CapableSource['listApiCalls']> {
    let rows = this.apiCalls.filter((c) => (q.since_us === undefined || c.timestamp_us >= q.since_us) && (q.until_us === undefined || c.timestamp_us <= q.until_us));
    if (q.after) rows = rows.slice(rows.findIndex((c) => c.cursor === q.after) + 1);
    return { calls: rows.slice(0, q.limit), more: rows.length > q.limit, nodes: this.nodes };
  }
}

test('resources/list offers what the source can serve; a flows-only source gets the service map only', async () => {
  const full = await connect(new TrafficSourceWithCalls(3));
  expect(full.getServerCapabilities()?.resources).toEqual({ subscribe: true, listChanged: false });
  expect(full.getServerCapabilities()?.completions).toBeDefined();
  const { resources } = await full.listResources();
  expect(resources.map((r) => r.uri)).toEqual(['kubeshark://kfl/reference', 'kubeshark://traffic/live', 'kubeshark://service-map', 'kubeshark://service-map.mmd', 'kubeshark://workers', 'kubeshark://snapshots', 'kubeshark://api-stats']);
  for (const r of resources) expect(r).toMatchObject({ name: expect.any(String), title: expect.any(String), description: expect.any(String), mimeType: expect.any(String) });
  const { resourceTemplates } = await full.listResourceTemplates();
  expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(['kubeshark://flows/{id}', 'kubeshark://api-calls/{id}']);

  const l4 = await connect(new MemorySource([], [ipPairGroup]));
  expect((await l4.listResources()).resources.map((r) => r.uri)).toEqual(['kubeshark://kfl/reference', 'kubeshark://service-map', 'kubeshark://service-map.mmd']);
  expect((await l4.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate)).toEqual(['kubeshark://flows/{id}']);
});

test('live traffic is the newest calls of the last minute of captured traffic, newest last', async () => {
  // 150 calls one second apart: the last minute holds calls 89..149 (61 calls).
  const client = await connect(new TrafficSourceWithCalls(150));
  const r = await client.readResource({ uri: 'kubeshark://traffic/live' });
  expect(r.contents).toHaveLength(1);
  expect(r.contents[0]).toMatchObject({ uri: 'kubeshark://traffic/live', mimeType: 'application/json' });
  const body = JSON.parse((r.contents[0] as { text: string }).text) as { calls: { id: string }[]; newest_us: number };
  expect(body.newest_us).toBe(T0_US + 149_000_000);
  expect(body.calls.map((c) => c.id)).toEqual(Array.from({ length: 61 }, (_, i) => `node-a/${89 + i}/0`));
});

test('the api-call template reads one call (id encoded or not); unknown ids and URIs are errors', async () => {
  const client = await connect(new TrafficSourceWithCalls(3));
  for (const uri of ['kubeshark://api-calls/node-a/1/0', `kubeshark://api-calls/${encodeURIComponent('node-a/1/0')}`]) {
    const r = await client.readResource({ uri });
    expect(JSON.parse((r.contents[0] as { text: string }).text).call).toMatchObject({ id: 'node-a/1/0', path: '/item/1' });
  }
  await expect(client.readResource({ uri: 'kubeshark://api-calls/node-a/99/0' })).rejects.toThrow(/no entry/);
  const err = await client.readResource({ uri: 'kubeshark://nothing' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(McpError);
  expect((err as McpError).code).toBe(-32002);
});

test('the service map: JSON nodes and edges from ip-pair flows, server call stats attached; Mermaid from the same', async () => {
  const source = new TrafficSourceWithCalls(10);
  source.apiStats = {
    groups: [
      { src: { ip: '10.0.0.1', port: 0 }, dst: { ip: '10.0.0.2', port: 80 }, service: '10.0.0.2:80', protocol: 'http', method: 'GET', endpoint: '/item/:id', requests: 10, failures: 2, unanswered: 0, statuses: [], latency: { count: 10, p50_us: 1004, p90_us: 1008, p99_us: 1009 }, first_us: T0_US, last_us: T0_US },
    ],
    entries: 10,
    nodes: [{ node: 'node-a', state: 'ok' }],
  };
  const client = await connect(source);
  const map = JSON.parse(((await client.readResource({ uri: 'kubeshark://service-map' })).contents[0] as { text: string }).text);
  expect(map.nodes).toEqual([
    { id: 'n0', label: '10.0.0.1', ip: '10.0.0.1' },
    { id: 'n1', label: '10.0.0.2', ip: '10.0.0.2', served: { requests: 10, failures: 2, error_rate: 0.2, latency_p99_us: 1009 } },
  ]);
  expect(map.edges).toEqual([
    { from: 'n0', to: 'n1', flows: 3, bytes: 40500, tcp_handshake_p50_us: 400, tcp_handshake_p99_us: 500, calls: { requests: 10, failures: 2, error_rate: 0.2, latency_p50_us: 1004, latency_p99_us: 1009 } },
  ]);
  expect(source.calls.filter((c) => c.method === 'getApiStats').map((c) => c.args)).toContainEqual({ by_client: true });
  const mmd = ((await client.readResource({ uri: 'kubeshark://service-map.mmd' })).contents[0] as { text: string; mimeType: string }).text;
  expect(mmd.split('\n')).toEqual(['graph LR', '  n0["10.0.0.1"]', '  n1["10.0.0.2<br/>10 calls, 20.0% failed"]', '  n0 -->|"3 flows, 40.5 kB, rtt p50 0.40 ms<br/>10 calls, 20.0% failed, p99 1.0 ms"| n1']);
  const tool = (await client.callTool({ name: 'get_service_map', arguments: { limit: 10 } })) as CallToolResult;
  expect(tool.isError).toBeFalsy();
  expect(tool.structuredContent).toMatchObject({ nodes: map.nodes, edges: map.edges, truncated: false });
  expect((tool.content[0] as { text: string }).text).toContain('```mermaid\ngraph LR');
});

test('subscribing to live traffic brings notifications/resources/updated when new calls arrive, and stops after unsubscribe', async () => {
  const source = new TrafficSourceWithCalls(5);
  const client = await connect(source, 10);
  const updates: string[] = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    updates.push(n.params.uri);
  });
  await client.subscribeResource({ uri: 'kubeshark://traffic/live' });
  await new Promise((r) => setTimeout(r, 60));
  expect(updates).toEqual([]); // nothing new yet
  source.apiCalls.push(mkCall(5));
  source.sync();
  for (let i = 0; i < 100 && updates.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(updates).toEqual(['kubeshark://traffic/live']);
  await client.unsubscribeResource({ uri: 'kubeshark://traffic/live' });
  source.apiCalls.push(mkCall(6));
  source.sync();
  await new Promise((r) => setTimeout(r, 60));
  expect(updates).toHaveLength(1);

  await expect(client.subscribeResource({ uri: 'kubeshark://workers' })).rejects.toThrow(/does not change by itself/);
  await expect(client.subscribeResource({ uri: 'kubeshark://nothing' })).rejects.toThrow(/Resource not found/);
});

test('completion: api call ids for the template and trace_request, addresses for debug_connection', async () => {
  const client = await connect(new TrafficSourceWithCalls(12));
  const ids = await client.complete({ ref: { type: 'ref/resource', uri: 'kubeshark://api-calls/{id}' }, argument: { name: 'id', value: 'node-a/1' } });
  expect(ids.completion.values).toEqual(['node-a/11/0', 'node-a/10/0', 'node-a/1/0']);
  const trace = await client.complete({ ref: { type: 'ref/prompt', name: 'trace_request' }, argument: { name: 'id', value: 'node-a/1' } });
  expect(trace.completion.values).toEqual(ids.completion.values);
  const ips = await client.complete({ ref: { type: 'ref/prompt', name: 'debug_connection' }, argument: { name: 'ip', value: '10.0.0.' } });
  expect(ips.completion.values.sort()).toEqual(['10.0.0.1', '10.0.0.2']);
  const none = await client.complete({ ref: { type: 'ref/prompt', name: 'network_health' }, argument: { name: 'start', value: '' } });
  expect(none.completion.values).toEqual([]);
  await expect(client.complete({ ref: { type: 'ref/prompt', name: 'nope' }, argument: { name: 'x', value: '' } })).rejects.toThrow(/Unknown prompt/);
});

test('namespaces: a resource, a template per namespace, and completion of namespace names for the template and the prompts', async () => {
  class WithWorkloads extends TrafficSourceWithCalls {
    async listWorkloads(q: { namespace?: string }): Promise<WorkloadList> {
      const all = [
        { kind: 'pod' as const, name: 'checkout-7d9-abc', namespace: 'shop', ips: ['10.1.0.2'], labels: {} },
        { kind: 'service' as const, name: 'checkout', namespace: 'shop', ips: ['10.96.0.2'], labels: {} },
        { kind: 'pod' as const, name: 'payment-5c6-def', namespace: 'payments', ips: ['10.1.0.3'], labels: {} },
        { kind: 'node' as const, name: 'node-a', namespace: '', ips: ['192.168.0.10'], labels: {} },
      ];
      const workloads = q.namespace ? all.filter((w) => w.namespace === q.namespace) : all;
      return { workloads, namespaces: q.namespace ? [q.namespace] : ['payments', 'shop'], nodes: [{ node: 'node-a', state: 'ok' }] };
    }
  }
  const client = await connect(new WithWorkloads(1));
  expect((await client.listResources()).resources.map((r) => r.uri)).toContain('kubeshark://namespaces');
  const ns = JSON.parse(((await client.readResource({ uri: 'kubeshark://namespaces' })).contents[0] as { text: string }).text);
  expect(ns.namespaces).toEqual([
    { name: 'payments', pods: ['payment-5c6-def'], services: [] },
    { name: 'shop', pods: ['checkout-7d9-abc'], services: ['checkout'] },
  ]);
  expect(ns.nodes).toEqual(['node-a']);
  const shop = JSON.parse(((await client.readResource({ uri: 'kubeshark://namespaces/shop' })).contents[0] as { text: string }).text);
  expect(shop.workloads.map((w: { name: string }) => w.name)).toEqual(['checkout-7d9-abc', 'checkout']);
  const done = await client.complete({ ref: { type: 'ref/resource', uri: 'kubeshark://namespaces/{namespace}' }, argument: { name: 'namespace', value: 'p' } });
  expect(done.completion.values).toEqual(['payments']);
  const prompt = await client.complete({ ref: { type: 'ref/prompt', name: 'find_errors' }, argument: { name: 'namespace', value: 's' } });
  expect(prompt.completion.values).toEqual(['shop']);
  const text = ((await client.getPrompt({ name: 'find_errors', arguments: { namespace: 'shop' } })).messages[0]!.content as { text: string }).text;
  expect(text).toContain('"kfl":"\\"shop\\" in namespaces"');
});

test('the flow template asks the source for exactly that flow id (a KFL flow_id filter) and completes ids', async () => {
  class ById extends MemorySource {
    asked: Parameters<MemorySource['listFlows']>[0][] = [];
    override async listFlows(q: Parameters<MemorySource['listFlows']>[0], ctx: Parameters<MemorySource['listFlows']>[1]): ReturnType<MemorySource['listFlows']> {
      this.asked.push(q);
      const r = await super.listFlows({ ...q, limit: 1000 }, ctx);
      const m = /^flow_id == "(.*)"$/.exec(q.kfl ?? '');
      const flows = m ? r.flows.filter((f) => f.id === m[1]) : r.flows;
      return { ...r, flows: flows.slice(0, q.limit), total: flows.length };
    }
  }
  const source = new ById([tcpFlow, udpFlow]);
  const client = await connect(source);
  const r = JSON.parse(((await client.readResource({ uri: 'kubeshark://flows/node-a/2' })).contents[0] as { text: string }).text);
  expect(r.flow).toMatchObject({ id: 'node-a/2', protocol: 'udp', server: { port: 53 } });
  expect(source.asked[source.asked.length - 1]).toMatchObject({ aggregate: 'none', kfl: 'flow_id == "node-a/2"', limit: 1 });
  await expect(client.readResource({ uri: 'kubeshark://flows/node-a/99' })).rejects.toThrow(/flow node-a\/99/);
  await expect(client.readResource({ uri: 'kubeshark://flows/not an id' })).rejects.toThrow(/Resource not found/);
  const ids = await client.complete({ ref: { type: 'ref/resource', uri: 'kubeshark://flows/{id}' }, argument: { name: 'id', value: 'node-a/' } });
  expect(ids.completion.values.sort()).toEqual(['node-a/1', 'node-a/2']);
});
