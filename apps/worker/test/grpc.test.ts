import * as grpc from '@grpc/grpc-js';
import { RttSketch } from '@kubeshark-mcp/capture';
import { createWorkerClient, type Flow, type WorkerClient } from '@kubeshark-mcp/proto';
import { grpcUnary } from '@kubeshark-mcp/testkit';
import { DEMO_DIR, WorkerEngine, expandInputs, startWorkerServer, type RunningWorkerServer } from '../src';
import { byEnds, demoGoldens, expectedFlows, observed } from './helpers';

/** The worker's gRPC service over real sockets, checked against tshark's view of the demo captures. */

let server: RunningWorkerServer;
let client: WorkerClient;
const engine = new WorkerEngine('node-a', 'test');

const unary = <Res>(method: string, req: object): Promise<Res> => grpcUnary<Res>(client, method, req, 5000);

beforeAll(async () => {
  await engine.replay(await expandInputs([DEMO_DIR]));
  server = await startWorkerServer(engine, '127.0.0.1', 0);
  client = createWorkerClient(server.address);
});

afterAll(async () => {
  client.close();
  await server.close();
});

test('ListFlows returns every flow tshark sees, with its counters and initial RTT', async () => {
  const res = await unary<{ node: string; flows: Flow[]; total: number }>('ListFlows', { limit: 10000 });
  const expected = expectedFlows(demoGoldens());
  expect(res.node).toBe('node-a');
  expect(res.total).toBe(expected.length);
  const got = res.flows.map((f) => observed({ ...f, protocol: f.protocol.toLowerCase(), client: f.client!, server: f.server!, client_to_server: f.client_to_server!, server_to_client: f.server_to_client! }));
  expect(got.sort(byEnds)).toEqual(expected.sort(byEnds));
  expect(new Set(res.flows.map((f) => f.id)).size).toBe(res.flows.length);
  expect(res.flows.every((f) => f.id.startsWith('node-a/'))).toBe(true);
});

test('filters are applied on the worker: protocol, port, ip and limit', async () => {
  const expected = expectedFlows(demoGoldens());
  const udp = await unary<{ flows: Flow[]; total: number }>('ListFlows', { protocol: 'UDP', limit: 10000 });
  expect(udp.total).toBe(expected.filter((e) => e.protocol === 'udp').length);
  expect(udp.flows.every((f) => f.protocol === 'UDP')).toBe(true);

  const port = await unary<{ flows: Flow[]; total: number }>('ListFlows', { port: 443, limit: 10000 });
  expect(port.total).toBe(expected.filter((e) => e.ends.split(' <> ').some((x) => x.endsWith(':443'))).length);

  const ip = '2a03:b0c0:3:d0::70:1001';
  const byIp = await unary<{ flows: Flow[]; total: number }>('ListFlows', { ip, limit: 10000 });
  expect(byIp.total).toBe(expected.filter((e) => e.ends.split(' <> ').some((x) => x.startsWith(`${ip}:`))).length);
  expect(byIp.total).toBeGreaterThan(0);

  const limited = await unary<{ flows: Flow[]; total: number }>('ListFlows', { limit: 3 });
  expect(limited.flows).toHaveLength(3);
  expect(limited.total).toBe(expected.length);
  const bytes = limited.flows.map((f) => f.client_to_server!.bytes + f.server_to_client!.bytes);
  expect([...bytes].sort((a, b) => b - a)).toEqual(bytes); // largest first by default
});

test('groups carry mergeable handshake sketches that agree with their exact percentiles', async () => {
  const res = await unary<{ groups: { key: string; tcp_handshake_server: { count: number; p50_us: number; p99_us: number; sketch: Buffer } }[] }>('ListFlows', {
    aggregate: 'AGGREGATE_IP_PAIR',
    limit: 1000,
  });
  const measured = res.groups.filter((g) => g.tcp_handshake_server.count > 0);
  expect(measured.length).toBeGreaterThanOrEqual(3);
  const merged = new RttSketch();
  let total = 0;
  for (const g of measured) {
    const p = g.tcp_handshake_server;
    const sketch = RttSketch.fromBytes(p.sketch);
    expect(sketch.count).toBe(p.count);
    expect(Math.abs(sketch.quantile(0.5)! - p.p50_us)).toBeLessThanOrEqual(0.01 * p.p50_us);
    expect(Math.abs(sketch.quantile(0.99)! - p.p99_us)).toBeLessThanOrEqual(0.01 * p.p99_us);
    merged.merge(sketch);
    total += p.count;
  }
  // Merging the groups' sketches gives the summary's distribution (what a hub would do).
  const summary = await unary<{ tcp_handshake_server: { count: number; p50_us: number } }>('GetFlowSummary', {});
  expect(merged.count).toBe(total);
  expect(summary.tcp_handshake_server.count).toBe(total);
  expect(Math.abs(merged.quantile(0.5)! - summary.tcp_handshake_server.p50_us)).toBeLessThanOrEqual(0.01 * summary.tcp_handshake_server.p50_us);
});

test('aggregate by node: one group holding every flow, with the summary handshake percentiles', async () => {
  const res = await unary<{ groups: { key: string; flows: number; tcp_handshake_server: { count: number; p50_us: number; p99_us: number } }[] }>('ListFlows', {
    aggregate: 'AGGREGATE_NODE',
  });
  const summary = await unary<{ total_flows: number; tcp_handshake_server: { count: number; p50_us: number; p99_us: number } }>('GetFlowSummary', {});
  expect(res.groups).toHaveLength(1);
  expect(res.groups[0]).toMatchObject({ key: 'node-a', flows: expectedFlows(demoGoldens()).length });
  expect(res.groups[0]!.tcp_handshake_server).toMatchObject({
    count: summary.tcp_handshake_server.count,
    p50_us: summary.tcp_handshake_server.p50_us,
    p99_us: summary.tcp_handshake_server.p99_us,
  });
});

test('a bad filter is INVALID_ARGUMENT naming the field', async () => {
  const err = await unary('ListFlows', { ip: 'not-an-ip' }).catch((e: grpc.ServiceError) => e);
  expect((err as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  expect((err as grpc.ServiceError).metadata.get('x-argument')).toEqual(['ip']);
  const order = await unary('ListFlows', { order_by: 'size' }).catch((e: grpc.ServiceError) => e);
  expect((order as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
});

test('Kubernetes calls without a Kubernetes source answer FAILED_PRECONDITION, later-milestone calls UNIMPLEMENTED, not fake data', async () => {
  for (const [method, req] of [['ListFlows', { aggregate: 'AGGREGATE_POD' }], ['ResolveIps', {}], ['ResolveWorkloads', {}]] as const) {
    const err = await unary(method, req).catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: 'no Kubernetes source configured (--cluster-map or --kube-watch)' });
  }
  // Targeted captures keep their packets as snapshots: without a data directory they are refused, and none are listed.
  const start = await unary('StartCapture', {}).catch((e: grpc.ServiceError) => e);
  expect(start).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/without a data directory/) });
  expect(await unary('ListCaptures', {})).toEqual({ captures: [] });
  // This engine has no data directory: snapshots are refused with the reason, not faked.
  const snap = await unary('ListSnapshots', {}).catch((e: grpc.ServiceError) => e);
  expect((snap as grpc.ServiceError).code).toBe(grpc.status.FAILED_PRECONDITION);
  expect((snap as grpc.ServiceError).details).toMatch(/no data directory/);
  // Following new entries is a later slice (entries themselves are tested in entries.test.ts).
  const stream = client.StreamEntries({ follow: true });
  const streamErr = await new Promise<grpc.ServiceError>((resolve) => {
    stream.on('error', resolve);
    stream.on('data', () => undefined);
  });
  expect(streamErr.code).toBe(grpc.status.UNIMPLEMENTED);
});

test('GetStatus and GetDataBoundaries report what was replayed', async () => {
  const goldens = demoGoldens();
  const status = await unary<{ node: string; packets_seen: number; flows_tracked: number; sources: { state: string }[]; boundaries: { flows: { oldest_us: number; newest_us: number } } }>('GetStatus', {});
  expect(status.node).toBe('node-a');
  expect(status.packets_seen).toBe(goldens.reduce((n, g) => n + g.frames, 0));
  expect(status.flows_tracked).toBe(expectedFlows(goldens).length);
  expect(status.sources.map((s) => s.state)).toEqual(goldens.map(() => 'done'));
  const firsts = goldens.flatMap((g) => [...g.tcp, ...g.udp].map((s) => Math.round(Number(s.firstTs) * 1e6)));
  const lasts = goldens.flatMap((g) => [...g.tcp, ...g.udp].map((s) => Math.round(Number(s.lastTs) * 1e6)));
  const b = await unary<{ flows: { oldest_us: number; newest_us: number } }>('GetDataBoundaries', {});
  expect(b.flows.oldest_us).toBe(Math.min(...firsts));
  expect(b.flows.newest_us).toBe(Math.max(...lasts));
  expect(status.boundaries.flows).toEqual(b.flows);
});
