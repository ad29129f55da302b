import * as grpc from '@grpc/grpc-js';
import { workerServiceDefinition } from '@kubeshark-mcp/proto';
import { capturePath } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, workerHandlers, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import type { ApiCall } from '@kubeshark-mcp/mcp-core';
import { GrpcTrafficSource } from '../src';

/**
 * The hub asks workers for batched entry frames (many entries per gRPC message). A worker that
 * predates batching ignores the request field and sends one entry per frame; the hub reads
 * both the same. Here one engine is served twice over real gRPC: as it is, and with the batch
 * field dropped from every StreamEntries request and without Exchange (a worker that knows neither).
 */

const engine = new WorkerEngine('node-b', 'test');
let current: RunningWorkerServer;
let old: { address: string; server: grpc.Server };
const sources: GrpcTrafficSource[] = [];

beforeAll(async () => {
  await engine.replay([capturePath('zeek/http_1000-requests-one-dropped-response.pcap.gz')]);
  current = await startWorkerServer(engine, '127.0.0.1', 0);
  // A worker that predates batching predates Exchange too: the hub calls StreamEntries on its own.
  const { Exchange: _exchange, ...handlers } = workerHandlers(engine) as unknown as Record<string, (call: { request: { batch?: boolean } }, cb?: unknown) => void>;
  const server = new grpc.Server();
  server.addService(workerServiceDefinition(), {
    ...handlers,
    StreamEntries(call: { request: { batch?: boolean } }) {
      call.request.batch = false;
      handlers.StreamEntries!(call);
    },
  } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  old = { address: `127.0.0.1:${port}`, server };
}, 60_000);

afterAll(async () => {
  for (const s of sources) s.close();
  old?.server.forceShutdown();
  await current?.close();
  await engine.close();
});

/** Every call, page by page with the returned cursors. */
async function allCalls(address: string, limit: number, kfl?: string): Promise<{ calls: ApiCall[]; pages: number }> {
  const source = new GrpcTrafficSource([address], 10_000);
  sources.push(source);
  const signal = new AbortController().signal;
  const calls: ApiCall[] = [];
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await source.listApiCalls({ limit, ...(after ? { after } : {}), ...(kfl ? { kfl } : {}) }, { signal });
    expect(page.nodes).toEqual([{ node: 'node-b', state: 'ok' }]);
    calls.push(...page.calls);
    pages++;
    if (!page.more) break;
    after = page.calls[page.calls.length - 1]!.cursor;
  }
  return { calls, pages };
}

test('batched and one-per-frame workers give the same calls, pages and cursors', async () => {
  const batched = await allCalls(current.address, 300);
  const single = await allCalls(old.address, 300);
  expect(batched.calls).toHaveLength(1000);
  expect(batched.pages).toBe(4);
  expect(batched.calls).toEqual(single.calls);
  const ts = batched.calls.map((c) => c.timestamp_us);
  expect([...ts].sort((a, b) => a - b)).toEqual(ts);
  expect(batched.calls.filter((c) => c.error === 'pair-not-found')).toHaveLength(1);
  // A filtered listing: the same on both.
  const failing = await allCalls(current.address, 50, 'status_code == 0');
  expect(failing.calls.map((c) => c.id)).toEqual((await allCalls(old.address, 50, 'status_code == 0')).calls.map((c) => c.id));
  expect(failing.calls).toHaveLength(1);
});

test('a page larger than a batch frame (256 entries) is read whole', async () => {
  const { calls, pages } = await allCalls(current.address, 1000);
  expect(pages).toBe(1);
  expect(calls).toHaveLength(1000);
  expect(new Set(calls.map((c) => c.id)).size).toBe(1000);
});
