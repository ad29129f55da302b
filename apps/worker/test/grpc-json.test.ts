import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createWorkerClient, type WorkerClient } from '@kubeshark-mcp/proto';
import { GOLDEN_DIR, REPO_ROOT, capturePath, grpcUnary, startWorkerProcess, waitFor } from '@kubeshark-mcp/testkit';
import { WorkerEngine, entryDetail, startWorkerServer, type RunningWorkerServer } from '../src';
import { loadGrpcDescriptorSet } from '../src/cli';

/**
 * gRPC messages as JSON on the worker: GetEntry over a real gRPC server, and `analyze --entries`
 * through the built bin, both with --grpc-descriptor-set. Expected values are tshark's decoding
 * of the same messages with the same .proto (fixtures/golden/<capture>/grpc-messages.json).
 */

const GREET = path.join(REPO_ROOT, 'fixtures', 'protos', 'greet.binpb');
const INVENTORY = path.join(REPO_ROOT, 'fixtures', 'protos', 'inventory.binpb');
const CLI = path.join(__dirname, '..', 'dist', 'cli.js');

type GField = [string, string | { type: string; fields: GField[] }, string?, string?, number?];
interface GoldenMessage {
  path: string;
  direction: 'request' | 'response';
  type: string;
  fields: GField[];
}
const golden = (capture: string): GoldenMessage[] => JSON.parse(readFileSync(path.join(GOLDEN_DIR, capture, 'grpc-messages.json'), 'utf8')) as GoldenMessage[];
/** The one string field of a greet message, as tshark decoded it. */
const greetText = (g: GoldenMessage): string => Buffer.from(g.fields[0]![3]!, 'hex').toString('utf8');

interface WireEntry {
  id: string;
  protocol: string;
  path: string;
  json: string;
}
interface Side {
  grpc_message_type?: string;
  grpc_messages?: { size?: number; compressed?: boolean; json?: Record<string, unknown>; error?: string }[];
  grpc_messages_omitted?: number;
  body?: string;
}

describe('GetEntry with a descriptor set', () => {
  let server: RunningWorkerServer;
  let client: WorkerClient;
  const engine = new WorkerEngine('node-g', 'test', undefined, undefined, {}, 1000, { grpcDecoder: loadGrpcDescriptorSet(GREET) });
  const plain = new WorkerEngine('node-p', 'test');
  let plainServer: RunningWorkerServer;
  let plainClient: WorkerClient;

  beforeAll(async () => {
    await engine.replay([capturePath('grpc-go-book/grpc_Client_Streaming.pcapng'), capturePath('grpc-go-book/grpc_Server_Streaming.pcapng')]);
    await plain.replay([capturePath('grpc-go-book/grpc_Client_Streaming.pcapng')]);
    server = await startWorkerServer(engine, '127.0.0.1', 0);
    plainServer = await startWorkerServer(plain, '127.0.0.1', 0);
    client = createWorkerClient(server.address);
    plainClient = createWorkerClient(plainServer.address);
  }, 60_000);

  afterAll(async () => {
    client.close();
    plainClient.close();
    await Promise.all([server.close(), plainServer.close()]);
  });

  const entry = async (c: WorkerClient, e: WorkerEngine, method: string): Promise<{ request: Side; response: Side }> => {
    const s = e.entries!.query({}).entries.find((x) => x.entry.path.endsWith(`/${method}`))!;
    const got = await grpcUnary<WireEntry>(c, 'GetEntry', { id: s.id });
    return JSON.parse(got.json) as { request: Side; response: Side };
  };

  test('a client-streaming call: every request message and the response, as tshark decoded them', async () => {
    const rec = await entry(client, engine, 'LongGreet');
    const g = golden('grpc-go-book/grpc_Client_Streaming.pcapng');
    expect(rec.request.grpc_message_type).toBe('greet.GreetRequest');
    expect(rec.request.grpc_messages!.map((m) => m.json)).toEqual(g.filter((x) => x.direction === 'request').map((x) => ({ firstName: greetText(x) })));
    expect(rec.response.grpc_message_type).toBe('greet.GreetResponse');
    expect(rec.response.grpc_messages!.map((m) => m.json)).toEqual(g.filter((x) => x.direction === 'response').map((x) => ({ result: greetText(x) })));
    // The bytes stay next to the JSON.
    expect(typeof rec.request.body).toBe('string');
  });

  test('a server-streaming call: its ten responses', async () => {
    const rec = await entry(client, engine, 'GreetManyTimes');
    const responses = golden('grpc-go-book/grpc_Server_Streaming.pcapng').filter((x) => x.direction === 'response');
    expect(responses).toHaveLength(10);
    expect(rec.response.grpc_messages!.map((m) => m.json?.result)).toEqual(responses.map(greetText));
    expect(rec.response.grpc_messages!.every((m) => m.error === undefined)).toBe(true);
  });

  test('without a descriptor set the record has no decoded messages (bytes only)', async () => {
    const rec = await entry(plainClient, plain, 'LongGreet');
    expect(rec.request.grpc_messages).toBeUndefined();
    expect(typeof rec.request.body).toBe('string');
  });

  test('messages beyond the body limit are listed as not kept', async () => {
    const small = new WorkerEngine('node-s', 'test', undefined, undefined, {}, 1000, { maxBodySize: 20, grpcDecoder: loadGrpcDescriptorSet(GREET) });
    await small.replay([capturePath('grpc-go-book/grpc_Server_Streaming.pcapng')]);
    const s = small.entries!.query({}).entries.find((x) => x.entry.protocol === 'grpc')!;
    const rec = entryDetail(s, undefined, small.grpcDecoder) as { response: Side };
    const msgs = rec.response.grpc_messages!;
    expect(msgs).toHaveLength(10);
    expect(msgs[0]!.error).toMatch(/^truncated: 15 of 25 bytes kept/);
    expect(msgs.slice(1).every((m) => m.error === 'not kept (body size limit or bytes missing)')).toBe(true);
  });
});

describe('the CLI', () => {
  const run = promisify(execFile);
  const cli = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  const dir = mkdtempSync(path.join(tmpdir(), 'grpc-json-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('analyze --entries --grpc-descriptor-set prints the messages of each gRPC call', async () => {
    const { code, stdout, stderr } = await cli(['analyze', capturePath('derived/grpc-inventory.pcap'), '--entries', '--grpc-descriptor-set', INVENTORY]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const calls = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { protocol: string; path: string; request: Side; response: Side });
    expect(calls.map((c) => c.path)).toEqual(['/shop.inventory.v1.InventoryService/GetItem', '/shop.inventory.v1.InventoryService/ListItems']);
    const g = golden('derived/grpc-inventory.pcap');
    expect(calls[0]!.request.grpc_messages).toEqual([{ size: 19, json: { sku: 'SKU-1001', warehouse: 'ams-1' } }]);
    const item = calls[0]!.response.grpc_messages![0]!.json!;
    // Spot checks against tshark's view; the dissectors' tests compare every field.
    const field = (name: string) => g[1]!.fields.find((f) => f[0] === name)!;
    expect(item.stockCount).toBe(field('stock_count')[1]);
    expect(item.condition).toBe(/^(\S+) \(/.exec(field('condition')[2]!)![1]);
    expect(item.label).toBe(field('display_name')[1]);
    const list = calls[1]!.response.grpc_messages![0]!;
    expect(list.compressed).toBe(true);
    expect((list.json!.items as unknown[]).length).toBe(g[3]!.fields.filter((f) => f[0] === 'items').length);
  });

  test('analyze --entries without the option prints the summary only', async () => {
    const { code, stdout } = await cli(['analyze', capturePath('derived/grpc-inventory.pcap'), '--entries']);
    expect(code).toBe(0);
    expect(stdout).not.toContain('grpc_messages');
  });

  test('serve with no capture (the demo) decodes the demo gRPC call with the shipped descriptor set', async () => {
    const { proc, address } = await startWorkerProcess(['--listen', '127.0.0.1:0', '--node', 'demo', '--data-dir', path.join(dir, 'demo')]);
    let client: WorkerClient | undefined;
    try {
      client = createWorkerClient(address);
      const c = client;
      await waitFor('the demo replay', async () => {
        const st = await grpcUnary<{ sources: { state: string }[] }>(c, 'GetStatus', {});
        return st.sources.length > 0 && st.sources.every((x) => x.state === 'done') ? true : undefined;
      });
      const ids = await new Promise<string[]>((resolve, reject) => {
        const found: string[] = [];
        const call = c.StreamEntries({ kfl: 'grpc', limit: 1 });
        call.on('data', (f: { entry?: WireEntry }) => f.entry && found.push(f.entry.id));
        call.on('error', reject);
        call.on('end', () => resolve(found));
      });
      expect(ids).toHaveLength(1);
      const rec = JSON.parse((await grpcUnary<WireEntry>(c, 'GetEntry', { id: ids[0]! })).json) as { path: string; request: Side; response: Side };
      const g = golden('grpc-go-book/grpc_Unary.pcapng').filter((m) => m.path === rec.path);
      expect(rec.request.grpc_messages).toEqual([{ size: expect.any(Number), json: { firstName: greetText(g.find((m) => m.direction === 'request')!) } }]);
      expect(rec.response.grpc_messages).toEqual([{ size: expect.any(Number), json: { result: greetText(g.find((m) => m.direction === 'response')!) } }]);
    } finally {
      client?.close();
      proc.kill();
    }
  });

  test('a missing or invalid descriptor set stops serve and analyze with a clear message', async () => {
    const junk = path.join(dir, 'junk.binpb');
    writeFileSync(junk, 'syntax = "proto3";\nmessage A {}\n');
    for (const cmd of [['serve', '--listen', '127.0.0.1:0'], ['analyze', capturePath('derived/grpc-inventory.pcap'), '--entries']]) {
      const missing = await cli([...cmd, '--grpc-descriptor-set', path.join(dir, 'nope.binpb')]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(`--grpc-descriptor-set ${path.join(dir, 'nope.binpb')}: no such file`);
      const bad = await cli([...cmd, '--grpc-descriptor-set', junk]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/--grpc-descriptor-set .*junk\.binpb: not a protobuf FileDescriptorSet .*protoc --descriptor_set_out=FILE --include_imports/);
      expect(bad.stdout).not.toMatch(/listening on/);
    }
    const noEntries = await cli(['analyze', capturePath('derived/grpc-inventory.pcap'), '--flows', '--grpc-descriptor-set', INVENTORY]);
    expect(noEntries.code).toBe(2);
    expect(noEntries.stderr).toMatch(/--grpc-descriptor-set applies to --entries/);
  });
});
