import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { BoundedEventStore, knownStructuredJson, mcpFastifyPlugin, structuredJson, parseToolsets, type McpPluginOptions, type ToolDefinition } from '../src/index';
import { CapableSource } from './memory-source';

/** Toolsets, read-only mode, stateless mode and resumable streams, over real HTTP with the SDK client. */

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INITIALIZE = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };

const running: { app: FastifyInstance; clients: Client[] }[] = [];

async function start(opts: Partial<McpPluginOptions>, source = new CapableSource()): Promise<{ url: URL; app: FastifyInstance; source: CapableSource }> {
  const app = Fastify({ logger: false });
  await app.register(mcpFastifyPlugin, { source, ...opts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  running.push({ app, clients: [] });
  return { app, source, url: new URL(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/mcp`) };
}

async function connect(url: URL): Promise<Client> {
  const client = new Client({ name: 'modes', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(url));
  running[running.length - 1]!.clients.push(client);
  return client;
}

afterEach(async () => {
  for (const { app, clients } of running.splice(0)) {
    for (const c of clients) await c.close().catch(() => undefined);
    await app.close();
  }
});

const echo = (readOnly: boolean): ToolDefinition<{ word: string }> => ({
  name: readOnly ? 'ext_echo' : 'ext_write',
  title: 'Echo',
  description: 'test tool',
  inputSchema: { type: 'object', properties: { word: { type: 'string' } }, required: ['word'], additionalProperties: false },
  outputSchema: { type: 'object', properties: { word: { type: 'string' } }, required: ['word'], additionalProperties: false },
  annotations: { readOnlyHint: readOnly },
  handler: async (args) => ({ structured: { word: args.word }, text: args.word }),
});

test('toolsets: only the enabled groups are offered', async () => {
  const { url } = await start({ toolsets: parseToolsets('l4, status') });
  const client = await connect(url);
  expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['list_l4_flows', 'get_l4_flow_summary', 'get_service_map', 'get_status', 'get_data_boundaries']);
  await expect(client.callTool({ name: 'list_api_calls', arguments: {} })).rejects.toThrow(/Unknown tool: list_api_calls/);
  expect(() => parseToolsets('l4,bogus')).toThrow(/unknown toolset "bogus"; toolsets are l4, l7/);
});

test('read-only mode leaves out every tool that changes state, including other plugins\' tools', async () => {
  const { url, app } = await start({ readOnly: true });
  expect(app.mcp.registerTool(echo(false))).toBe(false);
  expect(app.mcp.registerTool(echo(true))).toBe(true);
  const client = await connect(url);
  const names = (await client.listTools()).tools.map((t) => t.name);
  expect(names).not.toContain('create_snapshot');
  expect(names).not.toContain('delete_snapshot');
  expect(names).not.toContain('ext_write');
  expect(names).toContain('list_snapshots');
  expect(names).toContain('ext_echo');
  for (const t of (await client.listTools()).tools) expect(t.annotations?.readOnlyHint).toBe(true);
});

test('stateless mode: no session id, JSON answers, any request on its own; GET and DELETE are 405', async () => {
  const { url, source } = await start({ stateless: true });
  const init = await fetch(url, { method: 'POST', headers: HEADERS, body: JSON.stringify(INITIALIZE) });
  expect(init.status).toBe(200);
  expect(init.headers.get('mcp-session-id')).toBeNull();
  expect(init.headers.get('content-type')).toMatch(/application\/json/);
  expect(((await init.json()) as { result: { serverInfo: { name: string } } }).result.serverInfo.name).toBe('kubeshark-mcp');
  // A tools/call without any session: answered by a fresh server.
  const call = await fetch(url, {
    method: 'POST',
    headers: { ...HEADERS, 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'get_status', arguments: {} } }),
  });
  expect(call.status).toBe(200);
  expect(((await call.json()) as { result: CallToolResult }).result.isError).toBeFalsy();
  expect(source.calls.map((c) => c.method)).toEqual(['getStatus']);
  for (const method of ['GET', 'DELETE']) {
    const r = await fetch(url, { method, headers: { accept: 'text/event-stream' } });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST');
  }
  // The SDK client works against it too.
  const client = await connect(url);
  const r = (await client.callTool({ name: 'list_snapshots', arguments: {} })) as CallToolResult;
  expect(r.isError).toBeFalsy();
});

/** Reads an SSE body into events (id, data). */
function sse(text: string): { id?: string; data: unknown }[] {
  return text
    .split('\n\n')
    .map((block) => {
      const lines = block.split('\n');
      const id = lines.find((l) => l.startsWith('id:'))?.slice(3).trim();
      const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
      return data ? { ...(id ? { id } : {}), data: JSON.parse(data) as unknown } : undefined;
    })
    .filter((e): e is { id?: string; data: unknown } => e !== undefined);
}

test('resumability: a client that lost a stream gets the rest of it replayed from Last-Event-ID', async () => {
  const source = new CapableSource();
  source.exportSteps = [
    { bytes: 1000, packets: 2 },
    { bytes: 3000, packets: 6 },
    { bytes: 4096, packets: 12 },
  ];
  const { url } = await start({}, source);
  const init = await fetch(url, { method: 'POST', headers: HEADERS, body: JSON.stringify(INITIALIZE) });
  const sid = init.headers.get('mcp-session-id')!;
  await init.text();
  const h = { ...HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
  await (await fetch(url, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
  const res = await fetch(url, {
    method: 'POST',
    headers: h,
    body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'export_pcap', arguments: {}, _meta: { progressToken: 'p1' } } }),
  });
  const events = sse(await res.text()).filter((e) => e.id !== undefined);
  // Progress notifications, then the result, each with an event id.
  expect(events.length).toBeGreaterThanOrEqual(2);
  expect((events[events.length - 1]!.data as { id: number }).id).toBe(5);
  // "Lost" after the first event: resume from it.
  const again = await fetch(url, { method: 'GET', headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18', 'last-event-id': events[0]!.id! } });
  expect(again.status).toBe(200);
  const reader = again.body!.getReader();
  let text = '';
  const deadline = Date.now() + 5000;
  while (sse(text).filter((e) => e.id !== undefined).length < events.length - 1 && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
  }
  await reader.cancel();
  expect(sse(text).filter((e) => e.id !== undefined)).toEqual(events.slice(1));
});

test('the event store is bounded and replays only the stream asked for', async () => {
  const store = new BoundedEventStore(3);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await store.storeEvent(i % 2 ? 'b' : 'a', { jsonrpc: '2.0', method: `m${i}` }));
  expect(store.size).toBe(3);
  const got: string[] = [];
  const stream = await store.replayEventsAfter(ids[2]!, { send: async (_id, m) => void got.push((m as { method: string }).method) });
  expect(stream).toBe('a');
  expect(got).toEqual(['m4']);
  const none: string[] = [];
  await store.replayEventsAfter(ids[0]!, { send: async (_id, m) => void none.push((m as { method: string }).method) });
  expect(none).toEqual([]); // evicted: nothing to replay
});

test('a tool result is kept with the JSON the registry made of its structured content, and replays as sent', async () => {
  const structured = { calls: [{ id: 'n/1/0', status_code: 500, path: '/pay' }], returned: 1, truncated: false, nodes: [{ node: 'n', state: 'ok' }] };
  const json = structuredJson(structured);
  // The SDK validates a result into a copy: the same values under the same keys.
  const copy = { ...structured };
  expect(knownStructuredJson(copy)).toBe(json);
  expect(knownStructuredJson({ ...structured, returned: 2 })).toBeUndefined();
  expect(knownStructuredJson({ truncated: false, calls: structured.calls, returned: 1, nodes: structured.nodes })).toBeUndefined(); // another key order, another text
  expect(knownStructuredJson({ calls: [...structured.calls], returned: 1, truncated: false, nodes: structured.nodes })).toBeUndefined();
  const message = { jsonrpc: '2.0' as const, id: 7, result: { content: [{ type: 'text' as const, text: '1 API call' }], structuredContent: copy } };
  const store = new BoundedEventStore();
  const first = await store.storeEvent('a', { jsonrpc: '2.0', method: 'notifications/progress', params: { progress: 1, progressToken: 't' } });
  await store.storeEvent('a', message);
  await store.storeEvent('a', { ...message, id: 8, result: { ...message.result, structuredContent: { ...structured, returned: 2 } } });
  const got: unknown[] = [];
  await store.replayEventsAfter(first, { send: async (_id, m) => void got.push(m) });
  expect(got).toEqual([message, { ...message, id: 8, result: { ...message.result, structuredContent: { ...structured, returned: 2 } } }]);
  // Counted at about its JSON's size either way.
  const sizes = [message, got[1]].map((m) => JSON.stringify(m).length);
  const progress = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progress: 1, progressToken: 't' } }).length;
  expect(store.bytes - progress).toBeLessThanOrEqual(sizes[0]! + sizes[1]!);
  expect(store.bytes - progress).toBeGreaterThan(sizes[0]! + sizes[1]! - 50);
});

test('the event store is bounded by the JSON size of its events too, keeping the newest', async () => {
  const message = (i: number, chars: number) => ({ jsonrpc: '2.0' as const, method: `m${i}`, params: { pad: 'x'.repeat(chars) } });
  const one = JSON.stringify(message(0, 100)).length;
  const store = new BoundedEventStore(1000, one * 3);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await store.storeEvent('a', message(i, 100)));
  expect(store.size).toBe(3);
  expect(store.bytes).toBe(one * 3);
  const got: unknown[] = [];
  await store.replayEventsAfter(ids[2]!, { send: async (_id, m) => void got.push(m) });
  // Replayed as sent (kept as JSON text, parsed back).
  expect(got).toEqual([message(3, 100), message(4, 100)]);
  // An event larger than the whole bound is still kept, alone.
  await store.storeEvent('a', message(5, one * 4));
  expect(store.size).toBe(1);
});
