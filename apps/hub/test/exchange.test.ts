import * as grpc from '@grpc/grpc-js';
import { workerServiceDefinition } from '@kubeshark-mcp/proto';
import { capturePath } from '@kubeshark-mcp/testkit';
import { ERROR_CODES, TrafficSourceError } from '@kubeshark-mcp/mcp-core';
import { WorkerEngine, exchangeHandler, workerHandlers, type ExchangeHandler } from '@kubeshark-mcp/worker';
import { GrpcTrafficSource } from '../src';
import { EXCHANGE_IN_FLIGHT } from '../src/exchange';

/**
 * The hub's calls to a worker go over the worker's Exchange stream (many calls, one gRPC
 * stream). Here one engine is served over real gRPC by servers that count what reaches their
 * handlers: as the worker serves it, as a worker from before Exchange (the hub falls back to
 * separate calls), and with a ListFlows that never answers (deadlines and cancellation).
 */

const engine = new WorkerEngine('node-e', 'test');
const servers: grpc.Server[] = [];
const sources: GrpcTrafficSource[] = [];

interface Counted {
  address: string;
  /** Handler invocations by a call of its own, per method. */
  separate: Map<string, number>;
  /** Handler invocations inside an Exchange stream, per method. */
  exchanged: Map<string, number>;
  /** Exchange streams opened. */
  streams: number;
  /** Calls of the hanging ListFlows that saw their cancellation. */
  cancelled: number;
}

/** Serves the engine; `exchange: false` leaves Exchange out (an older worker), `hang` makes ListFlows never answer. */
async function serve(opts: { exchange: boolean; hang?: boolean }): Promise<Counted> {
  const base = workerHandlers(engine) as unknown as Record<string, ExchangeHandler>;
  const c: Counted = { address: '', separate: new Map(), exchanged: new Map(), streams: 0, cancelled: 0 };
  const handlers: Record<string, ExchangeHandler> = {};
  for (const [name, h] of Object.entries(base)) {
    if (name === 'Exchange') continue;
    handlers[name] = (call, cb) => {
      // A real grpc-js call object has getPeer; the object Exchange hands a handler does not.
      const m = typeof (call as { getPeer?: unknown }).getPeer === 'function' ? c.separate : c.exchanged;
      m.set(name, (m.get(name) ?? 0) + 1);
      if (opts.hang && name === 'ListFlows') {
        (call as grpc.ServerUnaryCall<unknown, unknown>).on('cancelled', () => c.cancelled++);
        return;
      }
      h(call, cb);
    };
  }
  const impl: Record<string, unknown> = { ...handlers };
  if (opts.exchange) {
    const exchange = exchangeHandler(workerServiceDefinition(), handlers);
    impl.Exchange = (stream: Parameters<typeof exchange>[0]) => {
      c.streams++;
      exchange(stream);
    };
  }
  const server = new grpc.Server();
  server.addService(workerServiceDefinition(), impl as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  servers.push(server);
  c.address = `127.0.0.1:${port}`;
  return c;
}

function source(address: string, deadlineMs = 10_000): GrpcTrafficSource {
  const s = new GrpcTrafficSource([address], deadlineMs);
  sources.push(s);
  return s;
}

beforeAll(async () => {
  await engine.replay([capturePath('zeek/http_1000-requests-one-dropped-response.pcap.gz'), capturePath('ndpi/mongodb.pcap')]);
}, 60_000);

afterAll(async () => {
  for (const s of sources) s.close();
  for (const s of servers) s.forceShutdown();
  await engine.close();
});

const ctx = () => ({ signal: new AbortController().signal });

/** What a session of an assistant asks: pages of calls and flows, stats, one call, counts. */
async function session(s: GrpcTrafficSource) {
  const first = await s.listApiCalls({ limit: 100 }, ctx());
  const second = await s.listApiCalls({ limit: 100, after: first.calls[first.calls.length - 1]!.cursor }, ctx());
  return {
    first,
    second,
    flows: await s.listFlows({ limit: 20, aggregate: 'none' } as never, ctx()),
    stats: await s.getApiStats({}, ctx()),
    call: await s.getApiCall(first.calls[3]!.id, ctx()),
    counts: await s.countApiCalls({ kfl: 'status_code >= 400' }, ctx()),
  };
}

test('the hub makes its calls over one Exchange stream, with the answers separate calls give', async () => {
  const current = await serve({ exchange: true });
  const old = await serve({ exchange: false });
  const viaExchange = await session(source(current.address));
  const viaCalls = await session(source(old.address));
  expect(viaExchange).toEqual(viaCalls);
  expect(viaExchange.first.calls).toHaveLength(100);
  expect(viaExchange.second.calls[0]!.timestamp_us).toBeGreaterThanOrEqual(viaExchange.first.calls[99]!.timestamp_us);
  // Everything went over one stream; nothing as a call of its own (but the connectivity probe, which is no handler call).
  expect(current.streams).toBe(1);
  expect([...current.separate.keys()]).toEqual([]);
  expect(current.exchanged.get('StreamEntries')).toBe(2);
  expect(current.exchanged.get('ListFlows')).toBe(1);
  // The older worker answered every call on its own: the hub fell back after Exchange was refused.
  expect(old.streams).toBe(0);
  expect(old.separate.get('StreamEntries')).toBe(2);
  expect([...old.exchanged.keys()]).toEqual([]);
});

test('beyond the calls one stream may carry at once, the hub makes calls of their own', async () => {
  const current = await serve({ exchange: true });
  const s = source(current.address);
  await s.listApiCalls({ limit: 1 }, ctx()); // learns the node name and opens the stream
  // All 100 reach the stream before any answer is back: 64 go on it (EXCHANGE_IN_FLIGHT), the rest on their own.
  const pages = await Promise.all(Array.from({ length: 100 }, (_, i) => s.listApiCalls({ limit: 1 + (i % 7) }, ctx())));
  pages.forEach((p, i) => expect(p.calls).toHaveLength(1 + (i % 7)));
  expect(EXCHANGE_IN_FLIGHT).toBe(64);
  expect(current.exchanged.get('StreamEntries')).toBe(1 + 64);
  expect(current.separate.get('StreamEntries')).toBe(36);
  expect(current.streams).toBe(1);
});

test('a call that outlives its deadline fails alone and is cancelled on the worker; the stream goes on', async () => {
  const hanging = await serve({ exchange: true, hang: true });
  const s = source(hanging.address, 300);
  const t0 = Date.now();
  const err = await s.listFlows({ limit: 5, aggregate: 'none' } as never, ctx()).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(TrafficSourceError);
  expect((err as TrafficSourceError).code).toBe(ERROR_CODES.DEADLINE_EXCEEDED);
  expect(Date.now() - t0).toBeLessThan(3000);
  // The worker hears of it (the hub's cancel, or its own copy of the deadline).
  for (let i = 0; i < 100 && hanging.cancelled < 1; i++) await new Promise((r) => setTimeout(r, 20));
  expect(hanging.cancelled).toBe(1);
  // Other calls on the same stream still answer.
  const page = await s.listApiCalls({ limit: 10 }, ctx());
  expect(page.calls).toHaveLength(10);
  expect(hanging.streams).toBe(1);
});

test('a cancelled request cancels its call on the worker', async () => {
  const hanging = await serve({ exchange: true, hang: true });
  const s = source(hanging.address, 10_000);
  const abort = new AbortController();
  const pending = s.listFlows({ limit: 5, aggregate: 'none' } as never, { signal: abort.signal }).catch((e: unknown) => e);
  for (let i = 0; i < 100 && (hanging.exchanged.get('ListFlows') ?? 0) < 1; i++) await new Promise((r) => setTimeout(r, 20));
  abort.abort();
  const err = await pending;
  expect((err as TrafficSourceError).code).toBe(ERROR_CODES.CANCELLED);
  for (let i = 0; i < 100 && hanging.cancelled < 1; i++) await new Promise((r) => setTimeout(r, 20));
  expect(hanging.cancelled).toBe(1);
  expect((await s.listApiCalls({ limit: 3 }, ctx())).calls).toHaveLength(3);
});

test('a worker that goes away fails the calls in flight as unavailable; a new stream serves the next ones', async () => {
  const current = await serve({ exchange: true });
  const s = source(current.address, 3000);
  expect((await s.listApiCalls({ limit: 5 }, ctx())).calls).toHaveLength(5);
  const server = servers[servers.length - 1]!;
  server.forceShutdown();
  const err = await s.listApiCalls({ limit: 5 }, ctx()).catch((e: unknown) => e);
  expect((err as TrafficSourceError).code).toBe(ERROR_CODES.UNAVAILABLE);
  // Back on the same port.
  const again = new grpc.Server();
  const base = workerHandlers(engine) as unknown as grpc.UntypedServiceImplementation;
  again.addService(workerServiceDefinition(), base);
  await new Promise<void>((resolve, reject) => again.bindAsync(current.address, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  servers.push(again);
  const page = await waitForPage(s);
  expect(page.calls).toHaveLength(5);
});

async function waitForPage(s: GrpcTrafficSource) {
  for (let i = 0; ; i++) {
    try {
      return await s.listApiCalls({ limit: 5 }, ctx());
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
