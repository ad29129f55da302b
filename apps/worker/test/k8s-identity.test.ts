import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { createWorkerClient, type WorkerClient } from '@kubeshark-mcp/proto';
import { capturePath, grpcUnary } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '../src';
import { clusterMapSource } from '../src/k8s';

/**
 * Kubernetes identities end to end on one worker: four replayed captures and a cluster map
 * written for their addresses (test/fixtures/k8s/replay-map.json), through a real gRPC server.
 *
 * The map, by hand:
 * - 192.168.1.104  pod production/api-gateway-5f7c9d8b6d-k2x4p (Deployment api-gateway, node-a), Service api-gateway
 * - 63.245.209.11  pod production/legacy-web-1 from 2008 until 2009-06-01, then pod
 *                  production/user-service-0 (StatefulSet, node-b, Service user-service) from 2009-07-01
 * - 10.16.1.11     pod staging/dns-client-7b8c9d6f5c-q8z7m (node-b), no Service
 * - 172.16.20.244  pod production/orders-6d5c4b3a29-x7k2m (node-a), Service orders
 * - 172.16.20.75   pod data/postgres-0 (node-b), Service postgres through an EndpointSlice
 * - 141.142.228.5  node node-a's InternalIP
 * - 192.150.187.43 Service staging/web's ClusterIP
 * - 8.8.8.8, 127.0.0.1: not in the map
 * - one Pod with a malformed podIP (skipped, reported) and a ConfigMap (ignored).
 *
 * The captures: http_pipelined-requests (1 flow 192.168.1.104 -> 63.245.209.11:80, 2009-11-18,
 * 5 HTTP calls), dns-udp-google (3 flows 10.16.1.11 -> 8.8.8.8:53, 3 DNS calls), pgsql (4 flows
 * 172.16.20.244 -> 172.16.20.75:5432 with 6 calls, 2 flows 127.0.0.1 -> 127.0.0.1:5432 with 9),
 * http_get (1 flow 141.142.228.5 -> 192.150.187.43:80, 1 call): 11 flows, 24 calls.
 */

const MAP = path.join(__dirname, 'fixtures', 'k8s', 'replay-map.json');
const CAPTURES = ['zeek/http_pipelined-requests.pcap', 'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', 'ndpi/pgsql.pcap', 'zeek/http_get.pcap'];

interface WireEndpoint {
  ip: string;
  port: number;
  name: string;
  namespace: string;
  pod: string;
  service: string;
  node: string;
  unresolved: string;
}
interface WireFlow {
  id: string;
  client: WireEndpoint;
  server: WireEndpoint;
  client_to_server: { packets: number; bytes: number };
  server_to_client: { packets: number; bytes: number };
  tcp_handshake_server_us?: number;
}
interface WireGroup {
  key: string;
  server: WireEndpoint;
  flows: number;
  tcp_flows: number;
  client_to_server: { packets: number; bytes: number };
  server_to_client: { packets: number; bytes: number };
  tcp_handshake_server: { count: number; p50_us: number; sketch: Uint8Array };
}
interface WireEntry {
  id: string;
  src: WireEndpoint;
  dst: WireEndpoint;
  protocol: string;
  json: string;
}

let server: RunningWorkerServer;
let client: WorkerClient;
let bare: RunningWorkerServer;
let bareClient: WorkerClient;
const engine = new WorkerEngine('node-k', 'test');
const plain = new WorkerEngine('node-p', 'test');
const unary = <Res>(method: string, req: object, c: WorkerClient = client): Promise<Res> => grpcUnary<Res>(c, method, req, 10_000);

function entries(req: object): Promise<WireEntry[]> {
  return new Promise((resolve, reject) => {
    const out: WireEntry[] = [];
    const call = client.StreamEntries(req);
    call.on('data', (f: { entry?: WireEntry }) => {
      if (f.entry) out.push(f.entry);
    });
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

const flows = async (req: object = {}): Promise<WireFlow[]> => (await unary<{ flows: WireFlow[] }>('ListFlows', { limit: 1000, ...req })).flows;
const groups = async (aggregate: string, c: WorkerClient = client): Promise<WireGroup[]> => (await unary<{ groups: WireGroup[] }>('ListFlows', { limit: 1000, aggregate }, c)).groups;
const who = (e: WireEndpoint): string => (e.pod ? `pod ${e.namespace}/${e.pod}` : e.service && !e.node ? `service ${e.namespace}/${e.service}` : e.node ? `node ${e.node}` : `ip ${e.ip} (${e.unresolved})`);

beforeAll(async () => {
  engine.kube = clusterMapSource([MAP]);
  await engine.replay(CAPTURES.map(capturePath));
  await plain.replay(CAPTURES.map(capturePath));
  server = await startWorkerServer(engine, '127.0.0.1', 0);
  client = createWorkerClient(server.address);
  bare = await startWorkerServer(plain, '127.0.0.1', 0);
  bareClient = createWorkerClient(bare.address);
}, 60_000);

afterAll(async () => {
  client.close();
  bareClient.close();
  await Promise.all([server.close(), bare.close()]);
});

test('every flow carries the identities of its ends at its first packet', async () => {
  const all = await flows();
  expect(all).toHaveLength(11);
  const pairs = all.map((f) => `${who(f.client)} -> ${who(f.server)}`).sort();
  expect(pairs).toEqual(
    [
      'ip 127.0.0.1 (not-in-cluster-map) -> ip 127.0.0.1 (not-in-cluster-map)',
      'ip 127.0.0.1 (not-in-cluster-map) -> ip 127.0.0.1 (not-in-cluster-map)',
      'node node-a -> service staging/web',
      // Not legacy-web-1, which held the address until 2009-06-01: the flow is from 2009-11-18.
      'pod production/api-gateway-5f7c9d8b6d-k2x4p -> pod production/user-service-0',
      ...Array<string>(4).fill('pod production/orders-6d5c4b3a29-x7k2m -> pod data/postgres-0'),
      ...Array<string>(3).fill('pod staging/dns-client-7b8c9d6f5c-q8z7m -> ip 8.8.8.8 (not-in-cluster-map)'),
    ].sort(),
  );
  const http = all.find((f) => f.client.ip === '192.168.1.104')!;
  expect(http.client).toMatchObject({ name: 'api-gateway-5f7c9d8b6d-k2x4p', namespace: 'production', service: 'api-gateway', node: 'node-a', unresolved: '' });
  expect(http.server).toMatchObject({ name: 'user-service-0', namespace: 'production', service: 'user-service', node: 'node-b' });
  const pg = all.find((f) => f.server.ip === '172.16.20.75')!;
  expect(pg.server).toMatchObject({ pod: 'postgres-0', namespace: 'data', service: 'postgres', node: 'node-b' });
  const dns = all.find((f) => f.client.ip === '10.16.1.11')!;
  expect(dns.client.service).toBe('');
  const get = all.find((f) => f.client.ip === '141.142.228.5')!;
  expect(get.client).toMatchObject({ name: 'node-a', namespace: '', pod: '', node: 'node-a' });
  expect(get.server).toMatchObject({ name: 'web', namespace: 'staging', service: 'web', pod: '', node: '' });
});

test('without a Kubernetes source the same flows are bare addresses, as before', async () => {
  const withIds = await flows();
  const without = (await unary<{ flows: WireFlow[] }>('ListFlows', { limit: 1000 }, bareClient)).flows;
  expect(without).toHaveLength(withIds.length);
  for (const f of without) for (const e of [f.client, f.server]) expect([e.name, e.namespace, e.pod, e.service, e.node, e.unresolved]).toEqual(['', '', '', '', '', '']);
  const strip = (f: WireFlow) => ({ ...f, id: f.id.split('/')[1], node: '', client: { ip: f.client.ip, port: f.client.port }, server: { ip: f.server.ip, port: f.server.port } });
  expect(withIds.map(strip)).toEqual(without.map(strip));
});

test('API calls carry identities at their request time, in summaries and in detail', async () => {
  const all = await entries({});
  expect(all).toHaveLength(24);
  const http = all.filter((e) => e.src.ip === '192.168.1.104');
  expect(http).toHaveLength(5);
  for (const e of http) {
    expect(e.src).toMatchObject({ pod: 'api-gateway-5f7c9d8b6d-k2x4p', namespace: 'production', service: 'api-gateway' });
    expect(e.dst).toMatchObject({ pod: 'user-service-0', namespace: 'production', service: 'user-service', node: 'node-b' });
    expect(JSON.parse(e.json).dst).toMatchObject({ ip: '63.245.209.11', port: 80, pod: 'user-service-0', namespace: 'production' });
  }
  const dns = all.find((e) => e.protocol === 'dns')!;
  const detail = await unary<WireEntry>('GetEntry', { id: dns.id });
  const record = JSON.parse(detail.json) as { src: Record<string, unknown>; dst: Record<string, unknown> };
  expect(record.src).toMatchObject({ ip: '10.16.1.11', pod: 'dns-client-7b8c9d6f5c-q8z7m', namespace: 'staging', node: 'node-b' });
  expect(record.dst).toEqual({ ip: '8.8.8.8', port: 53, unresolved: 'not-in-cluster-map' });
});

test('GetApiStats names servers by their Kubernetes service and namespace; unresolved ones stay ip:port', async () => {
  const stats = await unary<{ groups: { service: string; protocol: string; requests: number }[] }>('GetApiStats', {});
  // Expected from the calls' own (hand-checked above) destination identities.
  const expected = new Map<string, number>();
  for (const e of await entries({})) {
    const d = e.dst;
    const key = `${e.protocol} ${d.name ? `${d.namespace ? `${d.namespace}/` : ''}${d.service || d.name}:${d.port}` : `${d.ip.includes(':') ? `[${d.ip}]` : d.ip}:${d.port}`}`;
    expected.set(key, (expected.get(key) ?? 0) + 1);
  }
  const got = new Map<string, number>();
  for (const g of stats.groups) got.set(`${g.protocol} ${g.service}`, (got.get(`${g.protocol} ${g.service}`) ?? 0) + g.requests);
  expect(got).toEqual(expected);
  expect(got.get('http production/user-service:80')).toBe(5);
  expect(got.get('dns 8.8.8.8:53')).toBeGreaterThan(0);
});

test('GetFlowSummary: traffic by namespace and cross-namespace pairs, as the flows\' own identities add up', async () => {
  const all = await flows();
  const byNs = new Map<string, { flows: number; bytes: number }>();
  const pairs = new Map<string, { flows: number; bytes: number }>();
  for (const f of all) {
    const bytes = f.client_to_server.bytes + f.server_to_client.bytes;
    const c = f.client.namespace ?? '';
    const sv = f.server.namespace ?? '';
    for (const ns of c === sv ? [c] : [c, sv]) byNs.set(ns, { flows: (byNs.get(ns)?.flows ?? 0) + 1, bytes: (byNs.get(ns)?.bytes ?? 0) + bytes });
    if (c !== sv) pairs.set(`${c}>${sv}`, { flows: (pairs.get(`${c}>${sv}`)?.flows ?? 0) + 1, bytes: (pairs.get(`${c}>${sv}`)?.bytes ?? 0) + bytes });
  }
  const s = await unary<{ by_namespace: { namespace: string; flows: number; bytes: number }[]; cross_namespace: { src_namespace: string; dst_namespace: string; flows: number; bytes: number }[] }>('GetFlowSummary', { top: 100 });
  expect(new Map(s.by_namespace.map((n) => [n.namespace, { flows: n.flows, bytes: n.bytes }]))).toEqual(byNs);
  expect(new Map(s.cross_namespace.map((n) => [`${n.src_namespace}>${n.dst_namespace}`, { flows: n.flows, bytes: n.bytes }]))).toEqual(pairs);
  expect(byNs.has('production')).toBe(true);
  expect(pairs.size).toBeGreaterThan(0);
  // Biggest first.
  expect(s.by_namespace.map((n) => n.bytes)).toEqual([...s.by_namespace.map((n) => n.bytes)].sort((a, b) => b - a));
  const bare = await unary<{ by_namespace: unknown[] }>('GetFlowSummary', {}, bareClient);
  expect(bare.by_namespace).toEqual([]);
});

describe('KFL filters over identities (issue 5 acceptance)', () => {
  const ids = async (kfl: string): Promise<string[]> => (await entries({ kfl })).map((e) => `${e.src.ip} -> ${e.dst.ip} ${e.protocol}`);

  test('dst.pod.namespace == "production": the five calls to user-service-0', async () => {
    expect(await ids('dst.pod.namespace == "production"')).toEqual(Array<string>(5).fill('192.168.1.104 -> 63.245.209.11 http'));
  });

  test('src.service.name == "api-gateway" && dst.service.name == "user-service": the same five', async () => {
    expect(await ids('src.service.name == "api-gateway" && dst.service.name == "user-service"')).toEqual(Array<string>(5).fill('192.168.1.104 -> 63.245.209.11 http'));
    expect(await ids('src.service.name == "user-service"')).toEqual([]);
  });

  test('"production" in namespaces: the gateway calls and the orders -> postgres queries', async () => {
    const got = await ids('"production" in namespaces');
    expect(got.filter((x) => x.endsWith('http'))).toEqual(Array<string>(5).fill('192.168.1.104 -> 63.245.209.11 http'));
    expect(got.filter((x) => x.endsWith('postgresql'))).toEqual(Array<string>(6).fill('172.16.20.244 -> 172.16.20.75 postgresql'));
    expect(got).toHaveLength(11);
  });

  test('src.name, src.namespace, node names, pods, services and labels', async () => {
    expect(await ids('dst.namespace == "staging"')).toEqual(['141.142.228.5 -> 192.150.187.43 http']);
    expect(await ids('src.node.name == "node-a" && dst.service.name == "web"')).toEqual(['141.142.228.5 -> 192.150.187.43 http']);
    expect(await ids('src.name == "dns-client-7b8c9d6f5c-q8z7m"')).toHaveLength(3);
    expect(await ids('"postgres-0" in pods')).toHaveLength(6);
    expect(await ids('"postgres" in services && "orders" in services')).toHaveLength(6);
    expect(await ids('remote_labels["tier"] == "backend" && local_labels["tier"] == "edge"')).toHaveLength(5);
    expect(await ids('"data" in namespaces && !("production" in namespaces)')).toEqual([]);
  });

  test('flows: the same filters select flows', async () => {
    const sel = async (kfl: string): Promise<string[]> => (await flows({ kfl })).map((f) => `${f.client.ip} -> ${f.server.ip}`).sort();
    expect(await sel('dst.pod.namespace == "production"')).toEqual(['192.168.1.104 -> 63.245.209.11']);
    expect(await sel('src.service.name == "api-gateway" && dst.service.name == "user-service"')).toEqual(['192.168.1.104 -> 63.245.209.11']);
    expect(await sel('"production" in namespaces')).toEqual(['172.16.20.244 -> 172.16.20.75', '172.16.20.244 -> 172.16.20.75', '172.16.20.244 -> 172.16.20.75', '172.16.20.244 -> 172.16.20.75', '192.168.1.104 -> 63.245.209.11']);
    expect(await sel('src.node.name == "node-a"')).toHaveLength(6);
    expect(await sel('remote_labels["app"] == "postgres"')).toHaveLength(4);
  });

  test('a worker without a Kubernetes source matches none of them', async () => {
    const c = (await unary<{ matched: number }>('CountEntries', { kfl: '"production" in namespaces' }, bareClient)).matched;
    expect(c).toBe(0);
  });
});

describe('aggregates by namespace, pod and service', () => {
  /** The server-side key each flow should get, computed from the ungrouped flows. */
  const keyOf: Record<string, (f: WireFlow) => string> = {
    AGGREGATE_NAMESPACE: (f) => f.server.namespace || f.server.ip,
    AGGREGATE_POD: (f) => (f.server.pod ? `${f.server.namespace}/${f.server.pod}` : f.server.ip),
    AGGREGATE_SERVICE: (f) => (f.server.service ? `${f.server.namespace}/${f.server.service}` : f.server.ip),
  };

  test.each(Object.keys(keyOf))('%s: counts, bytes and handshakes add up to the flows of each group', async (aggregate) => {
    const all = await flows();
    const expected = new Map<string, { flows: number; bytes: number; handshakes: number[] }>();
    for (const f of all) {
      const k = keyOf[aggregate]!(f);
      const e = expected.get(k) ?? { flows: 0, bytes: 0, handshakes: [] };
      e.flows++;
      e.bytes += f.client_to_server.bytes + f.server_to_client.bytes;
      if (f.tcp_handshake_server_us !== undefined) e.handshakes.push(f.tcp_handshake_server_us);
      expected.set(k, e);
    }
    const got = await groups(aggregate);
    expect(got.map((g) => g.key).sort()).toEqual([...expected.keys()].sort());
    for (const g of got) {
      const e = expected.get(g.key)!;
      expect(g.flows).toBe(e.flows);
      expect(g.client_to_server.bytes + g.server_to_client.bytes).toBe(e.bytes);
      expect(g.tcp_handshake_server.count).toBe(e.handshakes.length);
      if (e.handshakes.length) {
        const sorted = [...e.handshakes].sort((a, b) => a - b);
        expect(g.tcp_handshake_server.p50_us).toBeCloseTo(sorted[Math.ceil(sorted.length / 2) - 1]!, 3);
        expect(g.tcp_handshake_server.sketch.length).toBeGreaterThan(0);
      }
    }
  });

  test('the groups, by hand', async () => {
    const byKey = (gs: WireGroup[]) => Object.fromEntries(gs.map((g) => [g.key, g.flows]));
    expect(byKey(await groups('AGGREGATE_NAMESPACE'))).toEqual({ production: 1, data: 4, staging: 1, '8.8.8.8': 3, '127.0.0.1': 2 });
    expect(byKey(await groups('AGGREGATE_POD'))).toEqual({ 'production/user-service-0': 1, 'data/postgres-0': 4, '192.150.187.43': 1, '8.8.8.8': 3, '127.0.0.1': 2 });
    const services = await groups('AGGREGATE_SERVICE');
    expect(byKey(services)).toEqual({ 'production/user-service': 1, 'data/postgres': 4, 'staging/web': 1, '8.8.8.8': 3, '127.0.0.1': 2 });
    expect(services.find((g) => g.key === 'data/postgres')!.server).toMatchObject({ namespace: 'data', service: 'postgres' });
    expect((await groups('AGGREGATE_POD')).find((g) => g.key === 'data/postgres-0')!.server).toMatchObject({ namespace: 'data', pod: 'postgres-0', node: 'node-b' });
  });

  test('without a Kubernetes source they fail with FAILED_PRECONDITION saying how to configure one', async () => {
    await expect(groups('AGGREGATE_NAMESPACE', bareClient)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: 'no Kubernetes source configured (--cluster-map or --kube-watch)' });
  });
});

describe('ResolveWorkloads and ResolveIps', () => {
  interface Wl {
    kind: string;
    name: string;
    namespace: string;
    ips: string[];
    node: string;
    owner_kind: string;
    owner_name: string;
    labels: Record<string, string>;
    services: string[];
    type: string;
  }
  test('workloads of one namespace, and of all', async () => {
    const r = await unary<{ workloads: Wl[]; namespaces: string[]; node: string }>('ResolveWorkloads', { namespace: 'production' });
    expect(r.node).toBe('node-k');
    expect(r.namespaces).toEqual(['production']);
    // legacy-web-1 is being deleted (deletionTimestamp set): not alive now.
    expect(r.workloads.map((w) => `${w.kind} ${w.namespace}/${w.name} ${w.ips.join(',')} ${w.owner_kind} ${w.owner_name} [${w.services.join(',')}]`)).toEqual([
      'pod production/api-gateway-5f7c9d8b6d-k2x4p 192.168.1.104 Deployment api-gateway [api-gateway]',
      'pod production/orders-6d5c4b3a29-x7k2m 172.16.20.244 Deployment orders [orders]',
      'pod production/user-service-0 63.245.209.11 StatefulSet user-service [user-service]',
      'service production/api-gateway 10.96.0.10   []',
      'service production/orders 10.96.0.12   []',
      'service production/user-service 10.96.0.11   []',
    ]);
    expect(r.workloads[0]!.labels).toEqual({ app: 'api-gateway', tier: 'edge', 'pod-template-hash': '5f7c9d8b6d' });
    expect(r.workloads[0]!.node).toBe('node-a');
    expect(r.workloads[3]!.type).toBe('ClusterIP');
    const all = await unary<{ workloads: Wl[]; namespaces: string[] }>('ResolveWorkloads', {});
    expect(all.namespaces).toEqual(['data', 'production', 'staging']);
    expect(all.workloads.filter((w) => w.kind === 'node').map((w) => `${w.name} ${w.ips.join(',')}`)).toEqual(['node-a 141.142.228.5', 'node-b 10.0.0.12']);
    expect(all.workloads.filter((w) => w.kind === 'pod')).toHaveLength(5);
    // At a time in the past, the pod that held the address then is alive.
    const past = await unary<{ workloads: Wl[] }>('ResolveWorkloads', { namespace: 'production', at_us: Date.UTC(2009, 2, 1) * 1000 });
    expect(past.workloads.filter((w) => w.kind === 'pod').map((w) => w.name)).toEqual(['api-gateway-5f7c9d8b6d-k2x4p', 'legacy-web-1']);
  });

  interface Ident {
    ip: string;
    kind: string;
    name: string;
    namespace: string;
    reason: string;
    flows: number;
    owner_kind: string;
  }
  test('given addresses, now and at a time', async () => {
    const now = await unary<{ identities: Ident[]; endpoints: WireEndpoint[] }>('ResolveIps', { ips: ['63.245.209.11', '8.8.8.8', '2001:db8:0::1'] });
    expect(now.identities.map((i) => `${i.ip} ${i.kind} ${i.namespace}/${i.name} ${i.reason}`)).toEqual([
      '63.245.209.11 pod production/user-service-0 ',
      '8.8.8.8 external / not-in-cluster-map',
      '2001:db8::1 external / not-in-cluster-map',
    ]);
    expect(now.endpoints[1]).toMatchObject({ ip: '8.8.8.8', unresolved: 'not-in-cluster-map' });
    const then = await unary<{ identities: Ident[] }>('ResolveIps', { ips: ['63.245.209.11'], at_us: Date.UTC(2009, 2, 1) * 1000 });
    expect(then.identities[0]).toMatchObject({ kind: 'pod', name: 'legacy-web-1', owner_kind: 'StatefulSet' });
    const gap = await unary<{ identities: Ident[] }>('ResolveIps', { ips: ['63.245.209.11'], at_us: Date.UTC(2009, 5, 15) * 1000 });
    expect(gap.identities[0]).toMatchObject({ kind: 'external', reason: 'no-pod-at-that-time' });
    await expect(unary('ResolveIps', { ips: ['nope'] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  test('addresses seen in flows, and those the map does not explain', async () => {
    const seen = await unary<{ identities: Ident[] }>('ResolveIps', { from_flows: true });
    expect(seen.identities.map((i) => `${i.ip} ${i.flows} ${i.kind}`)).toEqual([
      '172.16.20.244 4 pod',
      '172.16.20.75 4 pod',
      '10.16.1.11 3 pod',
      '8.8.8.8 3 external',
      '127.0.0.1 2 external',
      '141.142.228.5 1 node',
      '192.150.187.43 1 service',
      '192.168.1.104 1 pod',
      '63.245.209.11 1 pod',
    ]);
    const unknown = await unary<{ identities: Ident[] }>('ResolveIps', { from_flows: true, unresolved_only: true });
    expect(unknown.identities.map((i) => `${i.ip} ${i.flows} ${i.reason}`)).toEqual(['8.8.8.8 3 not-in-cluster-map', '127.0.0.1 2 not-in-cluster-map']);
  });

  test('a worker without a Kubernetes source says how to configure one', async () => {
    for (const method of ['ResolveWorkloads', 'ResolveIps']) {
      await expect(unary(method, { ips: ['10.0.0.1'] }, bareClient)).rejects.toMatchObject({
        code: grpc.status.FAILED_PRECONDITION,
        details: 'no Kubernetes source configured (--cluster-map or --kube-watch)',
      });
    }
  });
});

test('GetStatus reports the cluster map: objects loaded and the item it skipped, with its path', async () => {
  const s = await unary<{ kubernetes: Record<string, unknown> | null }>('GetStatus', {});
  expect(s.kubernetes).toMatchObject({ source: 'cluster-map', state: 'loaded-with-errors', pods: 6, services: 5, nodes: 2, endpoint_slices: 1 });
  expect(s.kubernetes!.errors).toEqual([expect.stringContaining('replay-map.json: items[14].status.podIP (Pod production/broken-0): not an IP address')]);
  expect(Number(s.kubernetes!.last_sync_us)).toBeGreaterThan(0);
  expect(Number(s.kubernetes!.lookups)).toBeGreaterThan(0);
  const b = await unary<{ kubernetes: unknown }>('GetStatus', {}, bareClient);
  expect(b.kubernetes).toBeNull();
});

test('analyze --cluster-map prints identities and reports skipped items once on stderr', async () => {
  const cli = path.join(__dirname, '..', 'dist', 'cli.js');
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [cli, 'analyze', capturePath(CAPTURES[0]!), '--entries', '--node', 'n1', '--cluster-map', MAP]);
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { src: Record<string, string>; dst: Record<string, string> });
  expect(lines).toHaveLength(5);
  for (const l of lines) expect(l.dst).toMatchObject({ pod: 'user-service-0', namespace: 'production', service: 'user-service' });
  expect(stderr.split('\n').filter((l) => l.includes('items[14].status.podIP (Pod production/broken-0)'))).toHaveLength(1);
  expect(stderr).toContain('6 pods, 5 services, 2 nodes, 1 endpoint slices');
}, 60_000);
