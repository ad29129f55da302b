import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createWorkerClient, type WorkerClient } from '@kubeshark-mcp/proto';
import { capturePath, grpcUnary } from '@kubeshark-mcp/testkit';
import { WorkerEngine, clusterMapSource, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { GrpcTrafficSource, buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';

/**
 * Kubernetes identities through the hub: two in-process workers (real gRPC on 127.0.0.1, port 0)
 * loaded with the same cluster map (the worker's test fixture, written for these captures'
 * addresses), read with the official MCP SDK client over HTTP. Both replay the pgsql capture, so
 * the "data" namespace group exists on both nodes and must merge. A third worker without a
 * Kubernetes source stands behind a second hub.
 *
 * The map names (see apps/worker/test/k8s-identity.test.ts): 192.168.1.104 api-gateway and
 * 63.245.209.11 user-service-0 (production), 172.16.20.244 orders (production) -> 172.16.20.75
 * postgres-0 (data), 10.16.1.11 dns-client (staging), 192.150.187.43 Service staging/web,
 * 141.142.228.5 node-a; 8.8.8.8 and 127.0.0.1 are not in it.
 */

const MAP = path.join(__dirname, '..', '..', 'worker', 'test', 'fixtures', 'k8s', 'replay-map.json');
const FILES: Record<string, string[]> = {
  'node-a': ['zeek/http_pipelined-requests.pcap', 'ndpi/pgsql.pcap'],
  'node-b': ['suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', 'ndpi/pgsql.pcap', 'zeek/http_get.pcap'],
};

interface TestWorker {
  engine: WorkerEngine;
  server: RunningWorkerServer;
  client: WorkerClient;
}

async function startWorker(node: string, files: string[], withMap: boolean): Promise<TestWorker> {
  const engine = new WorkerEngine(node, 'test');
  if (withMap) engine.kube = clusterMapSource([MAP]);
  await engine.replay(files.map(capturePath));
  const server = await startWorkerServer(engine, '127.0.0.1', 0);
  return { engine, server, client: createWorkerClient(server.address) };
}

async function startHub(workers: TestWorker[]): Promise<{ hub: Hub; client: Client }> {
  const hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: workers.map((w) => `127.0.0.1:${w.server.port}`), workerDeadlineMs: 5000 }), { logger: false });
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  const client = new Client({ name: 'kubernetes', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`)));
  return { hub, client };
}

const workers: TestWorker[] = [];
let bare: TestWorker;
let hub: Hub;
let client: Client;
let bareHub: Hub;
let bareClient: Client;

beforeAll(async () => {
  for (const [node, files] of Object.entries(FILES)) workers.push(await startWorker(node, files, true));
  bare = await startWorker('node-z', FILES['node-a']!, false);
  ({ hub, client } = await startHub(workers));
  ({ hub: bareHub, client: bareClient } = await startHub([bare]));
}, 60_000);

afterAll(async () => {
  await client?.close();
  await bareClient?.close();
  await hub?.app.close();
  await bareHub?.app.close();
  for (const w of [...workers, bare]) {
    w.client.close();
    await w.server.close(0);
    await w.engine.close();
  }
});

const call = async (c: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> => (await c.callTool({ name, arguments: args })) as CallToolResult;
const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
const structured = <T>(r: CallToolResult): T => {
  if (r.isError) throw new Error(text(r));
  return r.structuredContent as T;
};
const BOTH = [
  { node: 'node-a', state: 'ok' },
  { node: 'node-b', state: 'ok' },
];

interface WorkloadRow {
  kind: string;
  name: string;
  namespace: string;
  ips: string[];
  owner?: { kind: string; name: string };
  services?: string[];
}

test('the hub offers list_workloads and list_ips', async () => {
  const names = (await client.listTools()).tools.map((t) => t.name);
  expect(names).toEqual(expect.arrayContaining(['list_workloads', 'list_ips']));
});

describe('list_workloads', () => {
  test('one namespace, de-duplicated over the two workers that both know it', async () => {
    const r = structured<{ workloads: WorkloadRow[]; namespaces: string[]; total: number; nodes: unknown[] }>(await call(client, 'list_workloads', { namespace: 'production' }));
    expect(r.nodes).toEqual(BOTH);
    expect(r.namespaces).toEqual(['production']);
    expect(r.workloads.map((w) => `${w.kind} ${w.namespace}/${w.name} ${w.ips.join(',')}${w.owner ? ` ${w.owner.kind}/${w.owner.name}` : ''}`)).toEqual([
      'pod production/api-gateway-5f7c9d8b6d-k2x4p 192.168.1.104 Deployment/api-gateway',
      'pod production/orders-6d5c4b3a29-x7k2m 172.16.20.244 Deployment/orders',
      'pod production/user-service-0 63.245.209.11 StatefulSet/user-service',
      'service production/api-gateway 10.96.0.10',
      'service production/orders 10.96.0.12',
      'service production/user-service 10.96.0.11',
    ]);
    expect(r.total).toBe(6);
  });

  test('kind and name filters, and paging with a cursor over everything', async () => {
    const pods = structured<{ workloads: WorkloadRow[] }>(await call(client, 'list_workloads', { kind: 'pod', name: '^(user|postgres)' }));
    expect(pods.workloads.map((w) => `${w.namespace}/${w.name} [${(w.services ?? []).join(',')}]`)).toEqual(['data/postgres-0 [postgres]', 'production/user-service-0 [user-service]']);
    const nodes = structured<{ workloads: WorkloadRow[] }>(await call(client, 'list_workloads', { kind: 'node' }));
    expect(nodes.workloads.map((w) => w.name)).toEqual(['node-a', 'node-b']);

    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 20; i++) {
      const page = structured<{ workloads: WorkloadRow[]; nextCursor?: string; total: number }>(await call(client, 'list_workloads', { limit: 4, ...(cursor ? { cursor } : {}) }));
      expect(page.total).toBe(12);
      seen.push(...page.workloads.map((w) => `${w.kind} ${w.namespace}/${w.name}`));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    // 5 live pods, 5 Services, 2 nodes; each once.
    expect(seen).toHaveLength(12);
    expect(new Set(seen).size).toBe(12);
    const bad = await call(client, 'list_workloads', { name: '(' });
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/name/);
  });

  test('a hub whose worker has no Kubernetes source says how to configure one', async () => {
    for (const [tool, args] of [
      ['list_workloads', {}],
      ['list_ips', { ips: ['10.0.0.1'] }],
      ['list_l4_flows', { aggregate: 'namespace' }],
    ] as const) {
      const r = await call(bareClient, tool, args);
      expect(r.isError).toBe(true);
      expect(text(r)).toContain('no Kubernetes source configured (--cluster-map or --kube-watch)');
    }
  });
});

interface IpRow {
  ip: string;
  kind: string;
  name?: string;
  namespace?: string;
  reason?: string;
  flows?: number;
}

describe('list_ips', () => {
  test('given addresses, now and at a past time (a reused pod IP)', async () => {
    const now = structured<{ ips: IpRow[]; nodes: unknown[] }>(await call(client, 'list_ips', { ips: ['63.245.209.11', '8.8.8.8', '141.142.228.5'] }));
    expect(now.nodes).toEqual(BOTH);
    expect(now.ips.map((i) => `${i.ip} ${i.kind} ${i.namespace ?? ''}/${i.name ?? ''} ${i.reason ?? ''}`)).toEqual([
      '63.245.209.11 pod production/user-service-0 ',
      '8.8.8.8 external / not-in-cluster-map',
      '141.142.228.5 node /node-a ',
    ]);
    const then = structured<{ ips: IpRow[] }>(await call(client, 'list_ips', { ips: ['63.245.209.11'], at: '2009-03-01T00:00:00Z' }));
    expect(then.ips[0]).toMatchObject({ kind: 'pod', name: 'legacy-web-1', at: '2009-03-01T00:00:00.000000Z' });
  });

  test('addresses seen in flows on both nodes, flows added; and those not in the cluster map', async () => {
    const direct = await Promise.all(workers.map((w) => grpcUnary<{ identities: { ip: string; flows: number }[] }>(w.client, 'ResolveIps', { from_flows: true })));
    const sum = new Map<string, number>();
    for (const d of direct) for (const i of d.identities) sum.set(i.ip, (sum.get(i.ip) ?? 0) + i.flows);
    const all = structured<{ ips: IpRow[]; total: number }>(await call(client, 'list_ips', {}));
    expect(all.total).toBe(sum.size);
    expect(Object.fromEntries(all.ips.map((i) => [i.ip, i.flows]))).toEqual(Object.fromEntries(sum));
    expect(all.ips.map((i) => i.flows)).toEqual([...all.ips.map((i) => i.flows!)].sort((a, b) => b - a));
    // pgsql on both nodes: 4 + 4 flows each way, 2 + 2 on loopback.
    expect(sum.get('172.16.20.75')).toBe(8);
    const unknown = structured<{ ips: IpRow[] }>(await call(client, 'list_ips', { unresolved_only: true }));
    expect(unknown.ips.map((i) => `${i.ip} ${i.flows} ${i.reason}`)).toEqual(['127.0.0.1 4 not-in-cluster-map', '8.8.8.8 3 not-in-cluster-map']);
  });
});

interface GroupRow {
  key: string;
  flows: number;
  client: Record<string, string>;
  server: Record<string, string>;
  tcp_handshakes: number;
  tcp_handshake_p50_us?: number;
  tcp_handshake_p99_us?: number;
}

test('list_l4_flows aggregate=namespace merges the groups of both nodes, percentiles from merged sketches', async () => {
  const r = structured<{ groups: GroupRow[]; total: number; nodes: unknown[] }>(await call(client, 'list_l4_flows', { aggregate: 'namespace', limit: 100 }));
  expect(r.nodes).toEqual(BOTH);
  expect(Object.fromEntries(r.groups.map((g) => [g.key, g.flows]))).toEqual({ production: 1, data: 8, staging: 1, '8.8.8.8': 3, '127.0.0.1': 4 });
  expect(r.total).toBe(5);
  // The "data" group's handshakes: every postgres flow of both nodes, asked directly.
  const flows = await Promise.all(workers.map((w) => grpcUnary<{ flows: { server: { namespace: string }; tcp_handshake_server_us?: number }[] }>(w.client, 'ListFlows', { limit: 1000 })));
  const hs = flows
    .flatMap((f) => f.flows)
    .filter((f) => f.server.namespace === 'data' && f.tcp_handshake_server_us !== undefined)
    .map((f) => f.tcp_handshake_server_us!)
    .sort((a, b) => a - b);
  expect(hs).toHaveLength(8);
  const data = r.groups.find((g) => g.key === 'data')!;
  expect(data.server).toEqual({ namespace: 'data' });
  expect(data.tcp_handshakes).toBe(8);
  const rank = (p: number): number => hs[Math.max(0, Math.ceil((p / 100) * hs.length) - 1)]!;
  expect(Math.abs(data.tcp_handshake_p50_us! - rank(50)) / rank(50)).toBeLessThan(0.02);
  expect(Math.abs(data.tcp_handshake_p99_us! - rank(99)) / rank(99)).toBeLessThan(0.02);
  const pods = structured<{ groups: GroupRow[] }>(await call(client, 'list_l4_flows', { aggregate: 'pod' }));
  expect(pods.groups.find((g) => g.key === 'data/postgres-0')).toMatchObject({ flows: 8, server: { namespace: 'data', pod: 'postgres-0', name: 'postgres-0', node: 'node-b' } });
  const services = structured<{ groups: GroupRow[] }>(await call(client, 'list_l4_flows', { aggregate: 'service' }));
  expect(services.groups.map((g) => g.key).sort()).toEqual(['127.0.0.1', '8.8.8.8', 'data/postgres', 'production/user-service', 'staging/web']);
});

test('list_l4_flows rows carry identities, and list_api_calls selects by dst.namespace on every node', async () => {
  // namespace= selects flows with that namespace at either end, on both nodes; a cursor alone pages on.
  const first = structured<{ flows: { id: string; server: Record<string, unknown> }[]; total: number; nextCursor: string }>(await call(client, 'list_l4_flows', { namespace: 'data', limit: 5 }));
  expect(first.total).toBe(8);
  const rest = structured<{ flows: { id: string; server: Record<string, unknown> }[]; nextCursor?: string }>(await call(client, 'list_l4_flows', { cursor: first.nextCursor }));
  const ids = [...first.flows, ...rest.flows].map((f) => f.id);
  expect(new Set(ids).size).toBe(8);
  expect(new Set(ids.map((id) => id.split('/')[0]))).toEqual(new Set(['node-a', 'node-b']));
  for (const f of [...first.flows, ...rest.flows]) expect(f.server).toMatchObject({ namespace: 'data', pod: 'postgres-0' });
  expect(rest.nextCursor).toBeUndefined();

  const flows = structured<{ flows: { client: Record<string, unknown>; server: Record<string, unknown> }[] }>(await call(client, 'list_l4_flows', { ip: '192.168.1.104' }));
  expect(flows.flows).toHaveLength(1);
  expect(flows.flows[0]!.server).toMatchObject({ ip: '63.245.209.11', pod: 'user-service-0', namespace: 'production', service: 'user-service', node: 'node-b' });

  const nodeOf = (c: { id: string }): string => c.id.split('/')[0]!;
  const prod = structured<{ calls: { id: string; dst: { ip: string } }[] }>(await call(client, 'list_api_calls', { kfl: 'dst.namespace == "production"' }));
  expect(prod.calls.map((c) => `${nodeOf(c)} ${c.dst.ip}`)).toEqual(Array<string>(5).fill('node-a 63.245.209.11'));
  const data = structured<{ calls: { id: string; dst: { ip: string } }[] }>(await call(client, 'list_api_calls', { kfl: 'dst.namespace == "data"', limit: 100 }));
  expect(data.calls.filter((c) => nodeOf(c) === 'node-a')).toHaveLength(6);
  expect(data.calls.filter((c) => nodeOf(c) === 'node-b')).toHaveLength(6);
  // The full record of a call names both ends.
  const detail = structured<{ call: { src: Record<string, string>; dst: Record<string, string> } }>(await call(client, 'get_api_call', { id: data.calls[0]!.id }));
  expect(detail.call.src).toMatchObject({ pod: 'orders-6d5c4b3a29-x7k2m', namespace: 'production', service: 'orders' });
  expect(detail.call.dst).toMatchObject({ pod: 'postgres-0', namespace: 'data', service: 'postgres', node: 'node-b' });
  expect(new Set(data.calls.map((c) => c.dst.ip))).toEqual(new Set(['172.16.20.75']));
});

test('address pairs and the service map name both ends from the cluster map; addresses outside it stay addresses', async () => {
  const pairs = structured<{ groups: GroupRow[] }>(await call(client, 'list_l4_flows', { aggregate: 'ip_pair', limit: 100 }));
  const pg = pairs.groups.find((g) => g.key === '172.16.20.244 -> 172.16.20.75')!;
  expect(pg.client).toMatchObject({ ip: '172.16.20.244', namespace: 'production', service: 'orders' });
  expect(pg.server).toMatchObject({ ip: '172.16.20.75', namespace: 'data', pod: 'postgres-0', name: 'postgres-0', node: 'node-b' });
  const dns = pairs.groups.find((g) => g.key === '10.16.1.11 -> 8.8.8.8')!;
  expect(dns.client).toMatchObject({ namespace: 'staging', name: 'dns-client-7b8c9d6f5c-q8z7m' });
  expect(dns.server).toEqual({ ip: '8.8.8.8', unresolved: 'not-in-cluster-map' });

  const map = structured<{ nodes: { id: string; label: string; ip: string; namespace?: string }[]; edges: { from: string; to: string }[] }>(await call(client, 'get_service_map', {}));
  const byIp = new Map(map.nodes.map((n) => [n.ip, n]));
  expect(byIp.get('172.16.20.75')).toMatchObject({ label: 'postgres-0', namespace: 'data' });
  expect(byIp.get('10.16.1.11')).toMatchObject({ label: 'dns-client-7b8c9d6f5c-q8z7m', namespace: 'staging' });
  expect(byIp.get('8.8.8.8')).toMatchObject({ label: '8.8.8.8' });
  expect(map.edges.some((e) => e.from === byIp.get('172.16.20.244')!.id && e.to === byIp.get('172.16.20.75')!.id)).toBe(true);
  // The Mermaid text names the pods too.
  const mermaid = text(await call(client, 'get_service_map', {}));
  expect(mermaid).toContain('postgres-0');
});

test("the source's status carries each worker's Kubernetes section, and none for a worker without", async () => {
  const source = new GrpcTrafficSource([...workers, bare].map((w) => `127.0.0.1:${w.server.port}`), 5000);
  try {
    const { workers: states } = await source.getStatus({ signal: new AbortController().signal });
    const byNode = Object.fromEntries(states.map((s) => [s.node, s.kubernetes]));
    for (const node of ['node-a', 'node-b']) {
      expect(byNode[node]).toMatchObject({ source: 'cluster-map', state: 'loaded-with-errors', pods: 6, services: 5, nodes: 2, endpoint_slices: 1 });
      expect(byNode[node]!.errors).toEqual([expect.stringContaining('items[14].status.podIP')]);
    }
    expect(byNode['node-z']).toBeUndefined();
  } finally {
    source.close();
  }
});
