import { type Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ERROR_CODES, TrafficSourceError, toolsFor, type ApiCall, type ApiCallDetail, type ApiCallList, type ApiCallQuery, type CallContext, type TrafficSource } from '../src/index';
import { CapableSource, MemorySource, T0_US } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/** list_api_calls and get_api_call over an in-memory source that pages by its own cursor. */

const mkCall = (i: number, protocol: 'http' | 'dns'): ApiCall => ({
  id: `node-a/${i}/0`,
  node: 'node-a',
  protocol,
  timestamp_us: T0_US + i * 1000,
  elapsed_time_us: 100 + i,
  src: { ip: '10.0.0.1', port: 40000 + i },
  dst: { ip: '10.0.0.2', port: protocol === 'http' ? 80 : 53 },
  method: protocol === 'http' ? 'GET' : 'QUERY',
  path: protocol === 'http' ? `/item/${i}` : `host${i}.example.`,
  url: protocol === 'http' ? `http://shop/item/${i}` : `host${i}.example.`,
  status_code: protocol === 'http' ? 200 : 0,
  flow_id: `node-a/${i}`,
  cursor: `c${i}`,
});

/** Six calls alternating http/dns; filters like the hub does (after the cursor, then protocol). */
class ApiSource extends MemorySource {
  readonly apiQueries: ApiCallQuery[] = [];
  calls: ApiCall[] = Array.from({ length: 6 }, (_, i) => mkCall(i, i % 2 === 0 ? 'http' : 'dns'));

  async listApiCalls(q: ApiCallQuery, _ctx: CallContext): Promise<ApiCallList> {
    this.apiQueries.push(q);
    const from = q.after === undefined ? 0 : this.calls.findIndex((c) => c.cursor === q.after) + 1;
    const matching = this.calls.slice(from).filter((c) => !q.protocol || c.protocol === q.protocol);
    return { calls: matching.slice(0, q.limit), more: matching.length > q.limit, nodes: this.nodes };
  }

  async getApiCall(id: string, _ctx: CallContext): Promise<ApiCallDetail> {
    const c = this.calls.find((x) => x.id === id);
    if (!c) throw new TrafficSourceError(ERROR_CODES.NOT_FOUND, `no entry "${id}"`);
    return {
      call: {
        ...c,
        elapsed_time: c.elapsed_time_us,
        timestamp: c.timestamp_us,
        request: { headers: [['Host', 'shop'], ['Accept', '*/*']], body_size: 5000, truncated: false, body: 'x'.repeat(5000), body_encoding: 'text' },
        response: { headers: [['Content-Type', 'text/plain']], body_size: 2, truncated: false, body: 'ok', body_encoding: 'text' },
      },
      nodes: this.nodes,
    };
  }
}


const connect = (source: TrafficSource, maxResultTokens?: number): Promise<Client> => connectInMemory(source, maxResultTokens ? { registry: { maxResultTokens } } : {});

afterEach(closeInMemory);

const call = async (client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> =>
  (await client.callTool({ name, arguments: args })) as CallToolResult;
const text = (r: CallToolResult): string => (r.content[0] as { text: string }).text;
const structured = (r: CallToolResult) =>
  r.structuredContent as { calls: { id: string; protocol: string; timestamp: string; src: object }[]; total?: number; returned: number; truncated: boolean; nextCursor?: string };

describe('API call tools', () => {
  it('are offered only to a source that implements them', () => {
    expect(toolsFor(new MemorySource()).map((t) => t.name)).not.toContain('list_api_calls');
    expect(toolsFor(new MemorySource()).map((t) => t.name)).not.toContain('get_api_call');
    const names = toolsFor(new ApiSource()).map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['list_api_calls', 'get_api_call']));
    const onlyList = Object.assign(new MemorySource(), { listApiCalls: ApiSource.prototype.listApiCalls });
    expect(toolsFor(onlyList).map((t) => t.name)).toContain('list_api_calls');
    expect(toolsFor(onlyList).map((t) => t.name)).not.toContain('get_api_call');
  });

  it('lists calls in the compact shape, one line each, and passes the window through', async () => {
    const source = new ApiSource();
    const client = await connect(source);
    const r = await call(client, 'list_api_calls', { start: '2024-05-01T14:16:00.123456Z', end: 1714573200000 });
    expect(r.isError).toBeFalsy();
    expect(source.apiQueries).toEqual([{ since_us: T0_US, until_us: 1_714_573_200_000_000, limit: 100 }]);
    const s = structured(r);
    expect(s.returned).toBe(6);
    expect(s.truncated).toBe(false);
    expect(s.nextCursor).toBeUndefined();
    expect(s.total).toBeUndefined();
    expect(s.calls[0]).toEqual({
      id: 'node-a/0/0',
      node: 'node-a',
      timestamp: '2024-05-01T14:16:00.123456Z',
      protocol: 'http',
      src: { ip: '10.0.0.1', port: 40000 },
      dst: { ip: '10.0.0.2', port: 80 },
      method: 'GET',
      path: '/item/0',
      url: 'http://shop/item/0',
      status_code: 200,
      elapsed_time_us: 100,
      flow_id: 'node-a/0',
    });
    const lines = text(r).split('\n');
    expect(lines).toHaveLength(7);
    expect(lines[1]).toBe('2024-05-01T14:16:00.123456Z http 10.0.0.1:40000 -> 10.0.0.2:80 GET http://shop/item/0 -> 200 in 100 us (id node-a/0/0)');
  });

  it('pages by protocol with cursors until every match was seen once', async () => {
    const source = new ApiSource();
    const client = await connect(source);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const r = await call(client, 'list_api_calls', { protocol: 'dns', limit: 2, ...(cursor ? { cursor } : {}) });
      expect(r.isError).toBeFalsy();
      const s = structured(r);
      seen.push(...s.calls.map((c) => c.id));
      expect(s.calls.every((c) => c.protocol === 'dns')).toBe(true);
      cursor = s.nextCursor;
      expect(s.truncated).toBe(cursor !== undefined);
      if (!cursor) break;
    }
    expect(seen).toEqual(['node-a/1/0', 'node-a/3/0', 'node-a/5/0']);
    expect(source.apiQueries.map((q) => q.after)).toEqual([undefined, 'c3']);
    expect(source.apiQueries.every((q) => q.protocol === 'dns')).toBe(true);
  });

  it('cuts a page to the output budget and continues right after the last call returned', async () => {
    const source = new ApiSource();
    source.calls = Array.from({ length: 200 }, (_, i) => mkCall(i, 'http'));
    const client = await connect(source, 1000);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const r = await call(client, 'list_api_calls', { limit: 1000, ...(cursor ? { cursor } : {}) });
      expect(r.isError).toBeFalsy();
      const s = structured(r);
      expect(s.returned).toBeGreaterThan(0);
      if (s.nextCursor) expect(s.returned).toBeLessThan(200);
      seen.push(...s.calls.map((c) => c.id));
      cursor = s.nextCursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(source.calls.map((c) => c.id));
  });

  it('validates arguments and cursors', async () => {
    const client = await connect(new ApiSource());
    for (const [args, pattern] of [
      [{ limit: 0 }, /limit/],
      [{ limit: 1001 }, /limit/],
      [{ protocol: 'smtp' }, /protocol/],
      [{ kfl: 'http && respone.status == 500' }, /"kfl".*invalid KFL filter: unknown field "respone.status" at 1:9; did you mean "status_code"\?/],
      [{ start: 'yesterday' }, /start/],
      [{ start: 2000, end: 1000 }, /"end"/],
      [{ foo: 1 }, /foo/],
    ] as const) {
      const r = await call(client, 'list_api_calls', args as Record<string, unknown>);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(pattern);
    }
    await expect(call(client, 'list_api_calls', { cursor: 'not-a-cursor' })).rejects.toThrow(/Invalid cursor/);
    const first = structured(await call(client, 'list_api_calls', { protocol: 'http', limit: 1 }));
    await expect(call(client, 'list_api_calls', { protocol: 'dns', cursor: first.nextCursor })).rejects.toThrow(/"protocol"/);
  });

  it('returns the full record with headers and body previews', async () => {
    const client = await connect(new ApiSource());
    const r = await call(client, 'get_api_call', { id: 'node-a/0/0' });
    expect(r.isError).toBeFalsy();
    const c = (r.structuredContent as { call: { request: { headers: string[][]; body: string; body_preview_truncated?: boolean } } }).call;
    expect(c.request.headers).toEqual([['Host', 'shop'], ['Accept', '*/*']]);
    expect(c.request.body.length).toBe(2048);
    expect(c.request.body_preview_truncated).toBe(true);
    expect(text(r)).toContain('Host: shop');
    expect(text(r)).toContain('Content-Type: text/plain');
  });

  it('names "id" when there is no such call, and requires it', async () => {
    const client = await connect(new ApiSource());
    const r = await call(client, 'get_api_call', { id: 'node-a/99/0' });
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('"id"');
    const missing = await call(client, 'get_api_call', {});
    expect(missing.isError).toBe(true);
    expect(text(missing)).toContain('"id"');
  });
});

describe('get_api_call payloads', () => {
  it('shows body previews by default and the stored body with include_payload', async () => {
    const source = new CapableSource();
    const body = 'x'.repeat(3000);
    source.apiCalls = [{ ...mkCall(1, 'http'), request: { headers: [['Host', 'shop']], body_size: 3000, body, body_encoding: 'text', truncated: false } } as unknown as ApiCall];
    const client = await connect(source);
    const preview = (await call(client, 'get_api_call', { id: 'node-a/1/0' })).structuredContent as { call: { request: { body: string; body_preview_truncated?: boolean } } };
    expect(preview.call.request.body).toHaveLength(2048);
    expect(preview.call.request.body_preview_truncated).toBe(true);
    const full = (await call(client, 'get_api_call', { id: 'node-a/1/0', include_payload: true })).structuredContent as { call: { request: { body: string; body_preview_truncated?: boolean } } };
    expect(full.call.request.body).toBe(body);
    expect(full.call.request.body_preview_truncated).toBeUndefined();
  });
});

describe('get_api_call with decoded gRPC messages', () => {
  const grpcCall = (n: number): ApiCall =>
    ({
      ...mkCall(1, 'http'),
      protocol: 'grpc',
      path: '/greet.GreetService/LongGreet',
      request: {
        headers: [['content-type', 'application/grpc']],
        body_size: 30 * n,
        truncated: false,
        grpc_message_type: 'greet.GreetRequest',
        grpc_messages: [
          ...Array.from({ length: n }, (_, i) => ({ size: 25, json: { firstName: `name-${i}-${'z'.repeat(60)}` } })),
          { size: 9, error: 'does not decode as greet.GreetRequest: invalid wire type 7 at byte 0' },
        ],
      },
      response: null,
    }) as unknown as ApiCall;

  it('passes them through, says them in the text, and keeps only what fits the preview', async () => {
    const source = new CapableSource();
    source.apiCalls = [grpcCall(3)];
    const client = await connect(source);
    const r = await call(client, 'get_api_call', { id: 'node-a/1/0' });
    expect(r.isError).toBeFalsy();
    const req = (r.structuredContent as { call: { request: { grpc_messages: { json?: unknown; error?: string }[]; grpc_messages_omitted?: number } } }).call.request;
    expect(req.grpc_messages).toHaveLength(4);
    expect(req.grpc_messages_omitted).toBeUndefined();
    expect(text(r)).toContain(`grpc message 1 greet.GreetRequest: {"firstName":"name-0-${'z'.repeat(60)}"}`);
    expect(text(r)).toContain('grpc message 4 greet.GreetRequest: not decoded: does not decode as greet.GreetRequest: invalid wire type 7 at byte 0');

    // 40 messages of ~100 characters: those whose JSON fits in 2048 characters are kept, the rest counted.
    source.apiCalls = [grpcCall(40)];
    const cut = (await call(client, 'get_api_call', { id: 'node-a/1/0' })).structuredContent as { call: { request: { grpc_messages: { json?: { firstName: string } }[]; grpc_messages_omitted?: number } } };
    let fit = 0;
    for (let used = 0; ; fit++) {
      used += JSON.stringify({ size: 25, json: { firstName: `name-${fit}-${'z'.repeat(60)}` } }).length;
      if (used > 2048) break;
    }
    expect(fit).toBeGreaterThan(10);
    expect(cut.call.request.grpc_messages.map((m) => m.json?.firstName.slice(0, 8))).toEqual(Array.from({ length: fit }, (_, i) => `name-${i}-`.padEnd(8, 'z')));
    expect(cut.call.request.grpc_messages_omitted).toBe(41 - fit);
    const full = (await call(client, 'get_api_call', { id: 'node-a/1/0', include_payload: true })).structuredContent as { call: { request: { grpc_messages: unknown[] } } };
    expect(full.call.request.grpc_messages).toHaveLength(41);
  });
});

describe('list_api_calls format=full', () => {
  it('asks the source for full records and shows headers and body previews cut to 512 characters', async () => {
    const source = new CapableSource();
    source.apiCalls = [{ ...mkCall(1, 'http'), messages: { request: { headers: [['Host', 'shop']], body_size: 2000, body: 'y'.repeat(2000), truncated: false }, response: null } }];
    const client = await connect(source);
    const r = await call(client, 'list_api_calls', { format: 'full' });
    expect(source.calls.find((c) => c.method === 'listApiCalls')!.args).toMatchObject({ full: true });
    const row = (r.structuredContent as { calls: { request: { headers: string[][]; body: string; body_preview_truncated: boolean }; response: unknown }[] }).calls[0]!;
    expect(row.request.headers).toEqual([['Host', 'shop']]);
    expect(row.request.body).toHaveLength(512);
    expect(row.request.body_preview_truncated).toBe(true);
    expect(row.response).toBeNull();
    expect((r.content[0] as { text: string }).text).toContain('Host: shop');
    const compact = await call(client, 'list_api_calls', {});
    expect((compact.structuredContent as { calls: object[] }).calls[0]).not.toHaveProperty('request');
  });
});
