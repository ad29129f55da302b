import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mcpFastifyPlugin, type McpPluginOptions } from '../src/index';
import { MemorySource, summaryWithHandshake, tcpFlow } from './memory-source';
import { rawHttp, type RawAnswer } from '@kubeshark-mcp/testkit';

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-http', version: '0' } },
});

const send = rawHttp;
type Answer = RawAnswer;

const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const initialize = (port: number, headers: Record<string, string>): Promise<Answer> => send(port, 'POST', '/mcp', { ...MCP_HEADERS, ...headers }, INITIALIZE);

/** An initialize that reached the transport: 200, the server's answer, a session id. */
function expectInitialized(a: Answer): void {
  expect(a.status).toBe(200);
  expect(a.body).toContain('"protocolVersion"');
  expect(a.headers['mcp-session-id']).toEqual(expect.any(String));
}

/** A refusal by the guard: 403 with a JSON-RPC error naming `what` and saying how to allow it. */
function expectRefused(a: Answer, what: RegExp): string {
  expect(a.status).toBe(403);
  expect(a.headers['content-type']).toMatch(/application\/json/);
  const json = JSON.parse(a.body) as { jsonrpc: string; id: unknown; error: { code: number; message: string } };
  expect(json).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000 } });
  expect(json.error.message).toMatch(what);
  expect(json.error.message).toMatch(/To allow it/);
  return json.error.message;
}

interface Started {
  app: FastifyInstance;
  port: number;
}

const running: FastifyInstance[] = [];

async function start(opts: Partial<McpPluginOptions> = {}): Promise<Started> {
  const app = Fastify({ logger: false });
  await app.register(mcpFastifyPlugin, { source: new MemorySource([tcpFlow], [], summaryWithHandshake(2500)), ...opts });
  app.get('/healthz', async () => ({ status: 'ok' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  running.push(app);
  return { app, port: (app.server.address() as AddressInfo).port };
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((app) => app.close()));
});

describe('Host validation (default: loopback on any port)', () => {
  test('a foreign Host is refused with 403 before the transport sees it', async () => {
    const { app, port } = await start();
    for (const host of ['evil.example.com', `evil.example.com:${port}`, 'localhost.evil.example.com', '127.0.0.1.nip.io', '10.0.0.5']) {
      const message = expectRefused(await initialize(port, { host }), /Host ".*" is not allowed for \/mcp/);
      expect(message).toContain(JSON.stringify(host));
      expect(message).toMatch(/allowedHosts/);
    }
    expect(app.mcp.sessionCount()).toBe(0);
  });

  test('GET and DELETE are guarded too, whatever the session header', async () => {
    const { port } = await start();
    for (const method of ['GET', 'DELETE']) {
      expectRefused(await send(port, method, '/mcp', { host: 'evil.example.com', accept: 'text/event-stream', 'mcp-session-id': 'x' }), /Host/);
    }
  });

  test('localhost with and without a port, 127.0.0.1 and [::1] reach the transport', async () => {
    const { app, port } = await start();
    for (const host of ['localhost', `localhost:${port}`, 'LOCALHOST:8898', '127.0.0.1', `127.0.0.1:${port}`, '[::1]', `[::1]:${port}`]) {
      expectInitialized(await initialize(port, { host }));
    }
    expect(app.mcp.sessionCount()).toBe(7);
  });

  test('a configured host passes and the loopback default no longer applies', async () => {
    const { port } = await start({ allowedHosts: ['mcp.internal.example', 'localhost:8898', '[fd00::1]'] });
    expectInitialized(await initialize(port, { host: 'mcp.internal.example' }));
    expectInitialized(await initialize(port, { host: `mcp.internal.example:${port}` }));
    expectInitialized(await initialize(port, { host: 'localhost:8898' }));
    expectInitialized(await initialize(port, { host: '[FD00::1]:1234' }));
    expectRefused(await initialize(port, { host: 'localhost:8899' }), /"localhost:8899"/);
    expectRefused(await initialize(port, { host: 'localhost' }), /"localhost"/);
    expectRefused(await initialize(port, { host: `127.0.0.1:${port}` }), /Host/);
  });

  test('an entry with port 80 also matches a Host without a port', async () => {
    const { port } = await start({ allowedHosts: ['hub.example.com:80'] });
    expectInitialized(await initialize(port, { host: 'hub.example.com' }));
    expectRefused(await initialize(port, { host: 'hub.example.com:8080' }), /Host/);
  });

  test('malformed Host headers are refused', async () => {
    const { port } = await start();
    for (const host of ['localhost:99999', 'localhost:', 'user@localhost', 'localhost/x']) {
      const a = await initialize(port, { host });
      // Node's parser may refuse some outright (400); what must never happen is a 2xx.
      expect([400, 403]).toContain(a.status);
    }
  });

  test('the hint names the application setting when given', async () => {
    const { port } = await start({ allowHint: { host: 'set HUB_ALLOWED_HOSTS', origin: 'set HUB_ALLOWED_ORIGINS' } });
    expect(expectRefused(await initialize(port, { host: 'evil.example.com' }), /Host/)).toMatch(/To allow it, set HUB_ALLOWED_HOSTS\./);
    expect(expectRefused(await initialize(port, { host: 'localhost', origin: 'https://evil.example.com' }), /Origin/)).toMatch(/To allow it, set HUB_ALLOWED_ORIGINS\./);
  });
});

describe('Origin validation (when present)', () => {
  test('a foreign Origin is refused with 403 even with a local Host', async () => {
    const { app, port } = await start();
    for (const origin of ['https://evil.example.com', 'http://evil.example.com:8898', 'null', 'http://localhost.evil.example.com', 'file://', 'chrome-extension://abc']) {
      const message = expectRefused(await initialize(port, { host: `localhost:${port}`, origin }), /Origin ".*" is not allowed for \/mcp/);
      expect(message).toContain(JSON.stringify(origin));
      expect(message).toMatch(/allowedOrigins/);
    }
    expect(app.mcp.sessionCount()).toBe(0);
  });

  test('local origins on any port pass, over http and https', async () => {
    const { port } = await start();
    for (const origin of ['http://localhost', `http://localhost:${port}`, 'https://localhost:3000', 'http://127.0.0.1:5173', 'http://[::1]:8080']) {
      expectInitialized(await initialize(port, { host: `localhost:${port}`, origin }));
    }
  });

  test('no Origin (a non-browser client) passes', async () => {
    const { port } = await start();
    expectInitialized(await initialize(port, { host: `127.0.0.1:${port}` }));
  });

  test('configured origins: exact port when given, any port otherwise; the loopback default no longer applies', async () => {
    const { port } = await start({ allowedOrigins: ['https://app.example.com', 'http://tool.example.com:3000'] });
    const host = `localhost:${port}`;
    expectInitialized(await initialize(port, { host, origin: 'https://app.example.com' }));
    expectInitialized(await initialize(port, { host, origin: 'https://app.example.com:8443' }));
    expectInitialized(await initialize(port, { host, origin: 'http://tool.example.com:3000' }));
    expectRefused(await initialize(port, { host, origin: 'http://app.example.com' }), /Origin/); // other scheme
    expectRefused(await initialize(port, { host, origin: 'http://tool.example.com:3001' }), /Origin/);
    expectRefused(await initialize(port, { host, origin: 'http://localhost:3000' }), /Origin/);
  });
});

describe('scope and configuration', () => {
  test('only the MCP routes are guarded: the host application routes are not', async () => {
    const { port } = await start();
    const a = await send(port, 'GET', '/healthz', { host: 'evil.example.com', origin: 'https://evil.example.com' });
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body)).toEqual({ status: 'ok' });
  });

  test('a custom MCP path is guarded', async () => {
    const { port } = await start({ path: '/custom/mcp' });
    const a = await send(port, 'POST', '/custom/mcp', { ...MCP_HEADERS, host: 'evil.example.com' }, INITIALIZE);
    expect(expectRefused(a, /Host/)).toMatch(/for \/custom\/mcp/);
    expectInitialized(await send(port, 'POST', '/custom/mcp', { ...MCP_HEADERS, host: 'localhost' }, INITIALIZE));
  });

  test('the refusal comes before the body is read: a foreign Host with an oversized body still gets 403', async () => {
    const { port } = await start();
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { pad: 'x'.repeat(2 * 1024 * 1024) } });
    expectRefused(await send(port, 'POST', '/mcp', { ...MCP_HEADERS, host: 'evil.example.com', connection: 'close' }, big), /Host/);
  });

  test('wildcards, empty lists and malformed entries are refused at registration', async () => {
    const bad: [Partial<McpPluginOptions>, RegExp][] = [
      [{ allowedHosts: ['*'] }, /allowedHosts entry "\*": wildcards are not supported/],
      [{ allowedHosts: ['*.example.com'] }, /wildcards/],
      [{ allowedHosts: [] }, /allowedHosts is empty/],
      [{ allowedHosts: ['http://localhost'] }, /allowedHosts entry "http:\/\/localhost" is not a host or host:port/],
      [{ allowedHosts: ['localhost:70000'] }, /is not a host/],
      [{ allowedOrigins: ['*'] }, /allowedOrigins entry "\*": wildcards/],
      [{ allowedOrigins: ['localhost:3000'] }, /is not an origin/],
      [{ allowedOrigins: ['https://app.example.com/path'] }, /is not an origin/],
    ];
    for (const [opts, message] of bad) {
      const app = Fastify({ logger: false });
      await expect(app.register(mcpFastifyPlugin, { source: new MemorySource([tcpFlow], [], summaryWithHandshake(2500)), ...opts })).rejects.toThrow(message);
      await app.close().catch(() => undefined);
    }
  });

  test('the SDK client over Streamable HTTP works end to end with the guard in place', async () => {
    const { port } = await start();
    for (const base of [`http://127.0.0.1:${port}/mcp`, `http://localhost:${port}/mcp`]) {
      const client = new Client({ name: 'sdk-client', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(new URL(base));
      await client.connect(transport);
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toContain('list_l4_flows');
      const result = await client.callTool({ name: 'get_l4_flow_summary', arguments: {} });
      expect(result.isError).toBeFalsy();
      await transport.terminateSession();
      await client.close();
    }
  });
});
