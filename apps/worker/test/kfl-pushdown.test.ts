import * as grpc from '@grpc/grpc-js';
import { KflError, compile } from '@kubeshark-mcp/kfl';
import { createWorkerClient, type WorkerClient } from '@kubeshark-mcp/proto';
import { capturePath, grpcUnary, prng } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '../src';
import { entryRecord } from '../src/kfl-record';

/**
 * Issue 5's property test: random well-typed filters select the same entries through the worker
 * (compiled, pushed down over gRPC) as a direct in-process evaluation by the reference
 * interpreter over the same entries; malformed filters are INVALID_ARGUMENT and the worker
 * keeps answering.
 */

const CAPTURES = ['zeek/http_pipelined-requests.pcap', 'zeek/redis_django-cloud.pcapng', 'ndpi/http.pcapng', 'zeek/http_http-body-match.pcap', 'ndpi/kafka.pcapng', 'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', 'zeek/redis_pipelining-example.pcap', 'ndpi/pgsql.pcap', 'grpc-go-book/grpc_Unary.pcapng'];

let server: RunningWorkerServer;
let client: WorkerClient;
const engine = new WorkerEngine('node-p', 'test');

beforeAll(async () => {
  await engine.replay(CAPTURES.map(capturePath));
  server = await startWorkerServer(engine, '127.0.0.1', 0);
  client = createWorkerClient(server.address);
}, 60_000);

afterAll(async () => {
  client.close();
  await server.close();
});

function stream(req: object): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const ids: string[] = [];
    const call = client.StreamEntries(req);
    call.on('data', (f: { entry?: { id: string } }) => f.entry && ids.push(f.entry.id));
    call.on('error', reject);
    call.on('end', () => resolve(ids));
  });
}

/** Random well-typed filters over fields these captures fill, with values some entries have. */
function randomFilter(rand: () => number, depth = 0): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const atoms = [
    () => pick(['http', 'dns', 'redis', 'postgresql', 'grpc', 'tcp', 'udp', 'flow']),
    () => `status_code ${pick(['==', '!=', '<', '>=', '>'])} ${pick([0, 200, 304, 404, 500])}`,
    () => `method ${pick(['==', '!='])} ${JSON.stringify(pick(['GET', 'POST', 'SET', 'GET', 'QUERY', 'SELECT']))}`,
    () => `path.${pick(['startsWith', 'contains', 'endsWith'])}(${JSON.stringify(pick(['/', '.js', 'images', 'google', 'key', 'greet', '']))})`,
    () => `dst.port ${pick(['==', '!=', '<', '>'])} ${pick([53, 80, 443, 5432, 6379, 50051])}`,
    () => `elapsed_time ${pick(['<', '>'])} ${pick([0, 1000, 50000, 1000000])}`,
    () => `${JSON.stringify(pick(['google.com', 'example.com']))} in dns_questions`,
    () => `size(path) ${pick(['>', '<'])} ${pick([1, 10, 30])}`,
    () => `src.ip.startsWith(${JSON.stringify(pick(['192.', '10.', '::1', '172.']))})`,
    () => `request.headers[${JSON.stringify(pick(['host', 'user-agent', 'x-missing']))}] != ""`,
    () => `timestamp ${pick(['>', '<'])} timestamp("2015-01-01T00:00:00Z")`,
    () => `path.matches(${JSON.stringify(pick(['^/[a-z]+', '\\\\.png$', 'G[a-z]+']))})`,
  ];
  if (depth > 2 || rand() < 0.4) return atoms[Math.floor(rand() * atoms.length)]!();
  const op = pick(['&&', '||', '!']);
  if (op === '!') return `!(${randomFilter(rand, depth + 1)})`;
  return `(${randomFilter(rand, depth + 1)} ${op} ${randomFilter(rand, depth + 1)})`;
}

test('300 random filters: the worker selects exactly what the reference interpreter selects in process', async () => {
  const all = engine.entries!.query({}).entries;
  expect(all.length).toBeGreaterThan(50);
  const rand = prng(20261126);
  let nonTrivial = 0;
  for (let i = 0; i < 300; i++) {
    const filter = randomFilter(rand);
    const reference = compile(filter);
    const expected = all.filter((s) => reference.interpret(entryRecord(s))).map((s) => s.id);
    const got = await stream({ kfl: filter });
    expect({ filter, got }).toEqual({ filter, got: expected });
    const count = await grpcUnary<{ matched: number }>(client, 'CountEntries', { kfl: filter }, 10_000);
    expect(count.matched).toBe(expected.length);
    if (expected.length > 0 && expected.length < all.length) nonTrivial++;
  }
  // The generator is not degenerate: most filters select some entries but not all.
  expect(nonTrivial).toBeGreaterThan(100);
});

test('malformed filters are INVALID_ARGUMENT on "kfl" and never take the worker down', async () => {
  const rand = prng(7);
  const alphabet = ['http', '&&', '||', '(', ')', '"', 'status_code', '==', '500', '.', 'startsWith', '[', ']', '!', 'in', ',', ' ', '\\', '?', ':', '{', '}', 'x'];
  let refused = 0;
  for (let i = 0; i < 200; i++) {
    const n = 1 + Math.floor(rand() * 12);
    const filter = Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
    let compiles = true;
    try {
      compile(filter);
    } catch (err) {
      expect(err).toBeInstanceOf(KflError);
      compiles = false;
    }
    const res = await stream({ kfl: filter, limit: 1 }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    if (compiles) expect(res).toBeUndefined();
    else {
      refused++;
      expect(res?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(res?.metadata.get('x-argument')).toEqual(['kfl']);
    }
  }
  expect(refused).toBeGreaterThan(100);
  // Still answering.
  expect((await stream({ kfl: 'http', limit: 1 })).length).toBe(1);
  const tooLong = await stream({ kfl: `http && ${'(http || '.repeat(800)}http${')'.repeat(800)}` }).catch((e: grpc.ServiceError) => e);
  expect((tooLong as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
});

test('an HTTP entry\'s KFL path is the path alone; the query is query_string', () => {
  const stored = engine.entries!.query({}).entries.find((s) => s.entry.protocol === 'http')!;
  const withQuery = { ...stored, entry: { ...stored.entry, path: '/tokens?user=12345&x=%20y', url: 'shop/tokens?user=12345&x=%20y' } } as typeof stored;
  const r = entryRecord(withQuery);
  expect(r.path).toBe('/tokens');
  expect(r.query_string).toEqual({ user: '12345', x: ' y' });
  expect(compile('path == "/tokens" && query_string["user"] == "12345"').matches(r)).toBe(true);
});
