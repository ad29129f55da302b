import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ToolDefinitionError, mcpFastifyPlugin, type McpPluginOptions, type ToolDefinition } from '../src/index';
import { MemorySource, summaryWithHandshake, tcpFlow } from './memory-source';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-fetch', version: '0' } },
};

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `cond` every 25 ms; fails after `timeoutMs`. */
async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(25);
  }
}

/** Resolves with `p`, or rejects if it takes longer than `ms` (and leaves no timer behind). */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

interface Started {
  app: FastifyInstance;
  url: URL;
  source: MemorySource;
}

/** A real Fastify server on 127.0.0.1 with the plugin; `setup` runs as a sibling plugin, before listening. */
async function start(opts: Partial<McpPluginOptions> = {}, setup?: (app: FastifyInstance) => Promise<void>): Promise<Started> {
  const source = new MemorySource([tcpFlow], [], summaryWithHandshake(2500));
  const app = Fastify({ logger: false });
  await app.register(mcpFastifyPlugin, { source, ...opts });
  if (setup) await app.register(setup);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { app, source, url: new URL(`http://127.0.0.1:${port}${opts.path ?? '/mcp'}`) };
}

/** Opens a session the way a raw HTTP client would: one initialize POST, no GET stream. */
async function rawInitialize(url: URL): Promise<string> {
  const res = await fetch(url, { method: 'POST', headers: HEADERS, body: JSON.stringify(INITIALIZE) });
  const body = await res.text();
  expect(res.status).toBe(200);
  expect(body).toContain('"protocolVersion"');
  const id = res.headers.get('mcp-session-id');
  expect(id).toEqual(expect.any(String));
  return id!;
}

async function post(url: URL, body: unknown, sessionId?: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...HEADERS, ...(sessionId ? { 'mcp-session-id': sessionId } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

const echoTool: ToolDefinition<{ word: string; times: number }> = {
  name: 'hub_echo',
  title: 'Echo',
  description: 'Repeats a word: a stand-in for a tool another hub plugin contributes.',
  inputSchema: {
    type: 'object',
    properties: { word: { type: 'string', minLength: 1 }, times: { type: 'integer', minimum: 1, maximum: 5, default: 2 } },
    required: ['word'],
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: { echoed: { type: 'string' } },
    required: ['echoed'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true },
  handler: async ({ word, times }) => {
    const echoed = Array.from({ length: times }, () => word).join(' ');
    return { structured: { echoed }, text: echoed };
  },
};

describe('mcpFastifyPlugin over real HTTP', () => {
  let started: Started | undefined;
  const clients: Client[] = [];

  async function connectClient(url: URL): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const client = new Client({ name: 'plugin-test', version: '0.0.1' });
    const transport = new StreamableHTTPClientTransport(url);
    clients.push(client);
    await client.connect(transport);
    return { client, transport };
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await started?.app.close();
    started = undefined;
  });

  it('serves initialize, tools/list and tools/call to the SDK client', async () => {
    started = await start();
    const { client, transport } = await connectClient(started.url);
    expect(transport.sessionId).toEqual(expect.any(String));
    expect(client.getServerVersion()).toEqual({ name: 'kubeshark-mcp', version: '0.1.0' });

    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['list_l4_flows', 'get_l4_flow_summary', 'get_service_map']);

    const flows = (await client.callTool({ name: 'list_l4_flows', arguments: { port: 80, l4proto: 'tcp' } })) as CallToolResult;
    expect(flows.isError).toBeFalsy();
    expect(started.source.flowQueries).toStrictEqual([{ aggregate: 'none', order_by: 'bytes', limit: 100, protocol: 'tcp', port: 80 }]);
    expect(flows.structuredContent).toMatchObject({ total: 1, returned: 1, truncated: false, flows: [{ id: 'node-a/1', tcp_handshake_p50_us: 450 }] });

    const summary = (await client.callTool({ name: 'get_l4_flow_summary', arguments: { top: 1 } })) as CallToolResult;
    expect(summary.structuredContent).toMatchObject({ tcp_handshake_p50_us: 2500, tcp_handshake_band: 'good' });
    expect(started.source.summaryQueries).toStrictEqual([{ top: 1 }]);

    const bad = (await client.callTool({ name: 'list_l4_flows', arguments: { port: 0 } })) as CallToolResult;
    expect(bad.isError).toBe(true);
    expect(text(bad)).toContain('"port" must be >= 1');
  });

  it('passes serverInfo and instructions from the options, and serves on a custom path', async () => {
    started = await start({ path: '/api/mcp', serverInfo: { name: 'hub', version: '9.9.9' }, instructions: 'Use the tools.' });
    const { client } = await connectClient(started.url);
    expect(client.getServerVersion()).toEqual({ name: 'hub', version: '9.9.9' });
    expect(client.getInstructions()).toBe('Use the tools.');
    const res = await fetch(new URL('/mcp', started.url), { method: 'POST', headers: HEADERS, body: JSON.stringify(INITIALIZE) });
    expect(res.status).toBe(404);
    await res.text();
    expect(started.app.mcp.sessionCount()).toBe(1);
  });

  it('counts sessions, and forgets one when the client terminates it (DELETE)', async () => {
    started = await start();
    expect(started.app.mcp.sessionCount()).toBe(0);
    const first = await connectClient(started.url);
    expect(started.app.mcp.sessionCount()).toBe(1);
    const second = await connectClient(started.url);
    expect(started.app.mcp.sessionCount()).toBe(2);
    expect(second.transport.sessionId).not.toBe(first.transport.sessionId);

    const oldId = first.transport.sessionId!;
    await first.transport.terminateSession();
    expect(started.app.mcp.sessionCount()).toBe(1);

    // The terminated session is gone; the other one still works.
    const stale = await post(started.url, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, oldId);
    expect(stale.status).toBe(404);
    expect((await second.client.listTools()).tools).toHaveLength(3);

    await second.transport.terminateSession();
    expect(started.app.mcp.sessionCount()).toBe(0);
  });

  it('answers 404 to a request naming a session that does not exist', async () => {
    started = await start();
    const madeUp = '00000000-0000-4000-8000-000000000000';
    const res = await post(started.url, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, madeUp);
    expect(res.status).toBe(404);
    expect(res.json).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32001, message: expect.stringContaining(madeUp) } });

    // Even an initialize is refused when it names an unknown session.
    expect((await post(started.url, INITIALIZE, madeUp)).status).toBe(404);

    for (const method of ['GET', 'DELETE']) {
      const r = await fetch(started.url, { method, headers: { accept: 'text/event-stream', 'mcp-session-id': madeUp } });
      expect(r.status).toBe(404);
      await r.text();
    }
    expect(started.app.mcp.sessionCount()).toBe(0);
  });

  it('answers 400 to a request without a session that is not initialize', async () => {
    started = await start();
    const res = await post(started.url, { jsonrpc: '2.0', id: 3, method: 'tools/list' });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000, message: expect.stringContaining('initialize') } });

    const call = await post(started.url, { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'list_l4_flows', arguments: {} } });
    expect(call.status).toBe(400);
    expect(started.source.flowQueries).toEqual([]);

    const get = await fetch(started.url, { headers: { accept: 'text/event-stream' } });
    expect(get.status).toBe(400);
    await get.text();
    expect(started.app.mcp.sessionCount()).toBe(0);
  });

  it('opens a session for a raw initialize POST and serves it by its Mcp-Session-Id', async () => {
    started = await start();
    const id = await rawInitialize(started.url);
    expect(started.app.mcp.sessionCount()).toBe(1);
    const res = await fetch(started.url, {
      method: 'POST',
      headers: { ...HEADERS, 'mcp-session-id': id, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('"list_l4_flows"');
    expect(body).toContain('"get_l4_flow_summary"');
  });

  it('refuses sessions beyond maxSessions with 503', async () => {
    started = await start({ maxSessions: 1 });
    await connectClient(started.url);
    const res = await post(started.url, INITIALIZE);
    expect(res.status).toBe(503);
    expect(res.json).toMatchObject({ error: { code: -32000 } });
    expect(started.app.mcp.sessionCount()).toBe(1);
  });

  it('lets other code add tools with app.mcp.registerTool', async () => {
    started = await start();
    const before = await connectClient(started.url);
    started.app.mcp.registerTool(echoTool);
    expect(started.app.mcp.registry.has('hub_echo')).toBe(true);
    expect(() => started!.app.mcp.registerTool(echoTool)).toThrow(ToolDefinitionError);

    const { client } = await connectClient(started.url);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['list_l4_flows', 'get_l4_flow_summary', 'get_service_map', 'hub_echo']);
    expect(tools.find((t) => t.name === 'hub_echo')).toMatchObject({ title: 'Echo', annotations: { readOnlyHint: true }, inputSchema: { required: ['word'] } });

    const result = (await client.callTool({ name: 'hub_echo', arguments: { word: 'ping' } })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ echoed: 'ping ping' });
    expect(text(result)).toContain('ping ping');

    const invalid = (await client.callTool({ name: 'hub_echo', arguments: { word: 'x', times: 9 } })) as CallToolResult;
    expect(invalid.isError).toBe(true);
    expect(text(invalid)).toContain('"times" must be <= 5');

    // The registry is shared, so a session opened before the registration sees the tool too.
    const late = (await before.client.callTool({ name: 'hub_echo', arguments: { word: 'hi', times: 1 } })) as CallToolResult;
    expect(late.structuredContent).toEqual({ echoed: 'hi' });
  });

  it('exposes app.mcp to sibling plugins registered after it', async () => {
    started = await start({}, async (child) => {
      child.mcp.registerTool(echoTool);
    });
    const { client } = await connectClient(started.url);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('hub_echo');
    const result = (await client.callTool({ name: 'hub_echo', arguments: { word: 'a', times: 3 } })) as CallToolResult;
    expect(result.structuredContent).toEqual({ echoed: 'a a a' });
  });

  it('reaps idle sessions but keeps one whose client holds the GET stream open', async () => {
    started = await start({ sessionIdleTimeoutMs: 1000 });
    // An idle raw session (no GET stream) and an abandoned SDK session (client gone, no DELETE).
    const rawId = await rawInitialize(started.url);
    const abandoned = await connectClient(started.url);
    await abandoned.client.close();
    // A connected SDK client: its open GET stream makes the session busy.
    const live = await connectClient(started.url);
    expect(started.app.mcp.sessionCount()).toBe(3);

    const t0 = Date.now();
    await waitFor(() => started!.app.mcp.sessionCount() === 1, 5000, 'the idle sessions to be reaped');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);

    expect((await post(started.url, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, rawId)).status).toBe(404);
    const result = (await live.client.callTool({ name: 'list_l4_flows', arguments: {} })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(started.app.mcp.sessionCount()).toBe(1);
  });

  it('closes open sessions, GET streams included, on app.close()', async () => {
    started = await start();
    const { client } = await connectClient(started.url);
    await rawInitialize(started.url);
    expect(started.app.mcp.sessionCount()).toBe(2);
    await client.listTools();

    const app = started.app;
    started = undefined;
    await within(3000, app.close(), 'app.close() with an open session');
    expect(app.mcp.sessionCount()).toBe(0);

    // The server is gone: the client's next request fails.
    await expect(client.listTools()).rejects.toThrow();
  });
});
