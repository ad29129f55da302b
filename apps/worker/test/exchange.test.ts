import * as grpc from '@grpc/grpc-js';
import { createWorkerClient, type ExchangeReply__Output, type WorkerClient } from '@kubeshark-mcp/proto';
import { capturePath, grpcUnary } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '../src';

/**
 * Exchange (calls multiplexed over one stream) against the separate RPCs of the same worker,
 * over real gRPC: the same answers, the same errors, many calls interleaved on one stream.
 */

let server: RunningWorkerServer;
let client: WorkerClient;
const engine = new WorkerEngine('node-x', 'test');

beforeAll(async () => {
  await engine.replay([capturePath('zeek/http_1000-requests-one-dropped-response.pcap.gz'), capturePath('ndpi/mongodb.pcap')]);
  server = await startWorkerServer(engine, '127.0.0.1', 0);
  client = createWorkerClient(server.address);
}, 60_000);

afterAll(async () => {
  client.close();
  await server.close();
  await engine.close();
});

type Method = { path: string; requestSerialize: (v: unknown) => Buffer; responseDeserialize: (b: Buffer) => unknown };
const method = (name: string): Method => (client as unknown as Record<string, Method>)[name]!;

interface Outcome {
  messages: unknown[];
  code: number;
  details: string;
  argument: string;
}

/** One Exchange stream; `call` sends a request and resolves with its messages and status. */
function exchange() {
  const stream = client.Exchange();
  const waiting = new Map<number, { outcome: Outcome; done: (o: Outcome) => void; name: string }>();
  const replies: ExchangeReply__Output[] = [];
  stream.on('data', (r: ExchangeReply__Output) => {
    replies.push(r);
    const w = waiting.get(r.id);
    if (!w) return;
    if (r.has_response) w.outcome.messages.push(method(w.name).responseDeserialize(r.response));
    if (r.end) {
      waiting.delete(r.id);
      w.done({ ...w.outcome, code: r.code, details: r.details, argument: r.argument });
    }
  });
  stream.on('error', () => undefined);
  let next = 1;
  return {
    stream,
    replies,
    send(raw: { id?: number; method: string; request: Buffer; timeout_ms?: number; cancel?: boolean }): Promise<Outcome> {
      const id = raw.id ?? next++;
      return new Promise((done) => {
        waiting.set(id, { outcome: { messages: [], code: -1, details: '', argument: '' }, done, name: raw.method });
        stream.write({ timeout_ms: 5000, ...raw, id });
      });
    },
    call(name: string, request: object): Promise<Outcome> {
      return this.send({ method: name, request: method(name).requestSerialize(request) });
    },
    end: () => stream.end(),
  };
}

/** A server-streaming call of its own, read to its end. */
function streamed(name: string, request: object): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const call = (client as unknown as Record<string, (r: object) => grpc.ClientReadableStream<unknown>>)[name]!.call(client, request);
    const out: unknown[] = [];
    call.on('data', (m) => out.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

test('unary and streaming methods answer as their separate calls do', async () => {
  const x = exchange();
  try {
    for (const [name, req] of [
      ['ListFlows', { limit: 20, order_by: 'packets' }],
      ['GetFlowSummary', { top: 5 }],
      ['GetDataBoundaries', {}],
      ['GetApiStats', {}],
      ['CountEntries', { kfl: 'http && status_code == 200' }],
      ['GetEntry', { id: 'node-x/1/0', include_payload: false }],
    ] as const) {
      const got = await x.call(name, req);
      expect({ name, code: got.code, details: got.details }).toEqual({ name, code: grpc.status.OK, details: '' });
      expect(got.messages).toEqual([await grpcUnary(client, name, req, 5000)]);
    }
    // A page of 600 entries: three batch frames, then the end.
    const req = { limit: 600, batch: true, kfl: 'http' };
    const got = await x.call('StreamEntries', req);
    expect(got.code).toBe(grpc.status.OK);
    expect(got.messages.length).toBe(3);
    expect(got.messages).toEqual(await streamed('StreamEntries', req));
  } finally {
    x.end();
  }
});

test('many calls in flight on one stream each get their own answer', async () => {
  const x = exchange();
  try {
    const limits = Array.from({ length: 40 }, (_, i) => 1 + ((i * 37) % 200));
    const outcomes = await Promise.all(limits.map((limit, i) => (i % 2 ? x.call('StreamEntries', { limit, batch: true }) : x.call('ListFlows', { limit }))));
    outcomes.forEach((o, i) => {
      expect(o.code).toBe(grpc.status.OK);
      if (i % 2) {
        const entries = (o.messages as { batch: { entries: unknown[] } }[]).reduce((n, m) => n + m.batch.entries.length, 0);
        expect(entries).toBe(limits[i]);
      } else {
        expect((o.messages[0] as { flows: unknown[] }).flows.length).toBe(Math.min(limits[i]!, engine.stats().flows));
      }
    });
    // The replies of different calls interleave on the stream, each tagged with its id.
    expect(new Set(x.replies.map((r) => r.id)).size).toBe(40);
  } finally {
    x.end();
  }
});

test('errors come back as the separate call would give them, and the stream goes on', async () => {
  const x = exchange();
  try {
    const bad = await x.call('StreamEntries', { kfl: 'status_code ==', limit: 5 });
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.argument).toBe('kfl');
    const separate = await grpcUnary(client, 'CountEntries', { kfl: 'status_code ==' }, 5000).catch((e: grpc.ServiceError) => e);
    expect(bad.details).toBe((separate as grpc.ServiceError).details);
    expect(await x.call('GetEntry', { id: 'node-x/999999/0' })).toMatchObject({ code: grpc.status.NOT_FOUND, messages: [] });
    // Methods Exchange does not run, and ones that do not exist.
    expect(await x.call('ExportPcap', {})).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: expect.stringMatching(/cannot be called through Exchange; call it on its own/) });
    expect(await x.send({ method: 'NoSuchMethod', request: Buffer.alloc(0) })).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: expect.stringMatching(/no such method/) });
    expect(await x.send({ method: 'toString', request: Buffer.alloc(0) })).toMatchObject({ code: grpc.status.UNIMPLEMENTED });
    // Bytes that are no ListFlows request.
    expect(await x.send({ method: 'ListFlows', request: Buffer.from([0xff, 0xff, 0xff]) })).toMatchObject({ code: grpc.status.INTERNAL, details: expect.stringMatching(/did not decode/) });
    // A cancel for a call that is not in flight is ignored.
    x.stream.write({ id: 12345, cancel: true });
    expect((await x.call('ListFlows', { limit: 1 })).code).toBe(grpc.status.OK);
  } finally {
    x.end();
  }
});

test('the worker ends the stream once the caller has half-closed it and the calls in flight are answered', async () => {
  const x = exchange();
  const ended = new Promise<void>((resolve) => x.stream.on('end', () => resolve()));
  const pending = x.call('StreamEntries', { limit: 300, batch: true });
  x.end();
  expect((await pending).code).toBe(grpc.status.OK);
  await ended;
});
