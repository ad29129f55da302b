import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { buildHub, configFromEnv, ConfigError, DEFAULT_CONFIG, validateConfig, type Hub } from '../src';
import { rawHttp, type RawAnswer } from '@kubeshark-mcp/testkit';

// No worker is needed: initialize and tools/list never call one. The worker address points at
// a port nothing listens on, so /healthz answers "degraded" quickly.
const BASE_ENV = { HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_WORKERS: '127.0.0.1:1', HUB_WORKER_DEADLINE_MS: '300' };

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-http', version: '0' } },
});
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

const send = rawHttp;
type Answer = RawAnswer;

const running: Hub[] = [];

async function startHub(env: Record<string, string> = {}): Promise<{ hub: Hub; port: number }> {
  const hub = await buildHub(configFromEnv({ ...BASE_ENV, ...env }), { logger: false });
  running.push(hub);
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  return { hub, port: (hub.app.server.address() as AddressInfo).port };
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.app.close()));
});

const initialize = (port: number, headers: Record<string, string>): Promise<Answer> => send(port, 'POST', '/mcp', { ...MCP_HEADERS, ...headers }, INITIALIZE);

function expectInitialized(a: Answer): void {
  expect(a.status).toBe(200);
  expect(a.body).toContain('"protocolVersion"');
  expect(a.headers['mcp-session-id']).toEqual(expect.any(String));
}

function refusal(a: Answer): string {
  expect(a.status).toBe(403);
  const json = JSON.parse(a.body) as { jsonrpc: string; id: unknown; error: { code: number; message: string } };
  expect(json).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000 } });
  return json.error.message;
}

describe('DNS-rebinding protection on /mcp', () => {
  test('a foreign Host gets 403 naming the Host and HUB_ALLOWED_HOSTS', async () => {
    const { hub, port } = await startHub();
    const message = refusal(await initialize(port, { host: 'attacker.example.com' }));
    expect(message).toMatch(/Host "attacker\.example\.com" is not allowed for \/mcp/);
    expect(message).toMatch(/HUB_ALLOWED_HOSTS/);
    expect(hub.app.mcp.sessionCount()).toBe(0);
  });

  test('a foreign Origin gets 403 naming the Origin and HUB_ALLOWED_ORIGINS', async () => {
    const { port } = await startHub();
    const message = refusal(await initialize(port, { host: `localhost:${port}`, origin: 'https://attacker.example.com' }));
    expect(message).toMatch(/Origin "https:\/\/attacker\.example\.com" is not allowed for \/mcp/);
    expect(message).toMatch(/HUB_ALLOWED_ORIGINS/);
  });

  test('localhost with and without a port, 127.0.0.1 and a local Origin reach the MCP transport', async () => {
    const { hub, port } = await startHub();
    expectInitialized(await initialize(port, { host: 'localhost' }));
    expectInitialized(await initialize(port, { host: `localhost:${port}` }));
    expectInitialized(await initialize(port, { host: `127.0.0.1:${port}` }));
    expectInitialized(await initialize(port, { host: `localhost:${port}`, origin: 'http://localhost:6274' }));
    expect(hub.app.mcp.sessionCount()).toBe(4);
  });

  test('the host of HUB_PUBLIC_URL is allowed by default, with its origin', async () => {
    const { port } = await startHub({ HUB_PUBLIC_URL: 'https://hub.example.com/kubeshark' });
    expectInitialized(await initialize(port, { host: 'hub.example.com' }));
    expectInitialized(await initialize(port, { host: 'hub.example.com', origin: 'https://hub.example.com' }));
    expectInitialized(await initialize(port, { host: 'localhost' }));
    refusal(await initialize(port, { host: 'other.example.com' }));
    refusal(await initialize(port, { host: 'hub.example.com', origin: 'http://hub.example.com' }));
  });

  test('HUB_ALLOWED_HOSTS and HUB_ALLOWED_ORIGINS replace the defaults', async () => {
    const { port } = await startHub({ HUB_ALLOWED_HOSTS: 'mcp.corp.example, localhost:8898', HUB_ALLOWED_ORIGINS: 'https://console.corp.example' });
    expectInitialized(await initialize(port, { host: 'mcp.corp.example' }));
    expectInitialized(await initialize(port, { host: 'localhost:8898', origin: 'https://console.corp.example' }));
    refusal(await initialize(port, { host: `127.0.0.1:${port}` }));
    refusal(await initialize(port, { host: 'mcp.corp.example', origin: 'http://localhost:3000' }));
  });

  test('the SDK client over Streamable HTTP works end to end', async () => {
    const { port } = await startHub();
    const client = new Client({ name: 'sdk-client', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`));
    await client.connect(transport);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['list_l4_flows', 'get_l4_flow_summary', 'get_status']));
    await transport.terminateSession();
    await client.close();
  });

  test('health routes are not Host-checked (documented: they change nothing and hold no secrets)', async () => {
    const { port } = await startHub();
    const health = await send(port, 'GET', '/healthz', { host: 'attacker.example.com', origin: 'https://attacker.example.com' });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'degraded', mcp: { path: '/mcp' } });
    const ready = await send(port, 'GET', '/readyz', { host: 'attacker.example.com' });
    expect(ready.status).toBe(503);
  });
});

describe('request limits', () => {
  test('a POST to /mcp over 1 MiB gets 413; one of exactly 1 MiB is served', async () => {
    const { port } = await startHub();
    const padded = (bytes: number): string => {
      const base = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'big', version: '0' }, pad: '' } };
      const overhead = Buffer.byteLength(JSON.stringify(base));
      return JSON.stringify({ ...base, params: { ...base.params, pad: 'x'.repeat(bytes - overhead) } });
    };
    const over = padded(1024 * 1024 + 1);
    expect(Buffer.byteLength(over)).toBe(1024 * 1024 + 1);
    const tooBig = await send(port, 'POST', '/mcp', { ...MCP_HEADERS, host: 'localhost', connection: 'close' }, over);
    expect(tooBig.status).toBe(413);
    const under = padded(1024 * 1024);
    expect(Buffer.byteLength(under)).toBe(1024 * 1024);
    expectInitialized(await send(port, 'POST', '/mcp', { ...MCP_HEADERS, host: 'localhost' }, under));
  });
});

describe('configuration', () => {
  test('defaults: loopback names and HUB_HOST, http and https origins on them', () => {
    const c = configFromEnv({});
    expect(c.allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    expect(c.allowedOrigins).toEqual(['http://localhost', 'https://localhost', 'http://127.0.0.1', 'https://127.0.0.1', 'http://[::1]', 'https://[::1]']);
    expect(Object.isFrozen(c.allowedHosts)).toBe(true);
    expect(configFromEnv({ HUB_HOST: '127.0.0.2' }).allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]', '127.0.0.2']);
    expect(configFromEnv({ HUB_HOST: '::1' }).allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
  });

  test('defaults follow HUB_PUBLIC_URL', () => {
    const c = configFromEnv({ HUB_PUBLIC_URL: 'https://Hub.Example.com:8443/kubeshark/' });
    expect(c.allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]', 'hub.example.com']);
    expect(c.allowedOrigins).toContain('https://hub.example.com:8443');
    expect(c.allowedOrigins).toContain('http://localhost');
  });

  test('good values are read comma-separated and trimmed', () => {
    const c = configFromEnv({
      HUB_ALLOWED_HOSTS: ' hub.example.com , hub.example.com:8898,[::1]:8898,10.0.0.7 ',
      HUB_ALLOWED_ORIGINS: 'https://app.example.com, http://localhost:3000,http://[::1]:6274',
    });
    expect(c.allowedHosts).toEqual(['hub.example.com', 'hub.example.com:8898', '[::1]:8898', '10.0.0.7']);
    expect(c.allowedOrigins).toEqual(['https://app.example.com', 'http://localhost:3000', 'http://[::1]:6274']);
    expect(validateConfig({ ...DEFAULT_CONFIG, allowedHosts: ['localhost'] }).allowedHosts).toEqual(['localhost']);
  });

  test('"*" is refused with a clear message, for hosts and origins', () => {
    expect(() => configFromEnv({ HUB_ALLOWED_HOSTS: '*' })).toThrow(/allowedHosts\.0: "\*": wildcards are not allowed, they would switch off DNS-rebinding protection; list each host name clients use in HUB_ALLOWED_HOSTS/);
    expect(() => configFromEnv({ HUB_ALLOWED_ORIGINS: '*' })).toThrow(/allowedOrigins\.0: "\*": wildcards are not allowed.*HUB_ALLOWED_ORIGINS/);
    expect(() => configFromEnv({ HUB_ALLOWED_HOSTS: 'localhost,*.example.com' })).toThrow(/allowedHosts\.1: "\*\.example\.com": wildcards/);
  });

  test('malformed entries are all listed, and the hub refuses to start', () => {
    let err: unknown;
    try {
      configFromEnv({ HUB_ALLOWED_HOSTS: 'http://hub.example.com,hub:99999,::1,hub/x', HUB_ALLOWED_ORIGINS: 'app.example.com,https://app.example.com/,https://app.example.com/path,ftp://x,null' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toEqual([
      expect.stringMatching(/^allowedHosts\.0: "http:\/\/hub\.example\.com" is not a host or host:port/),
      expect.stringMatching(/^allowedHosts\.1: "hub:99999" is not a host/),
      expect.stringMatching(/^allowedHosts\.2: "::1" is not a host.*\[::1\]:8898/),
      expect.stringMatching(/^allowedHosts\.3: "hub\/x" is not a host/),
      expect.stringMatching(/^allowedOrigins\.0: "app\.example\.com" is not an origin/),
      expect.stringMatching(/^allowedOrigins\.1: "https:\/\/app\.example\.com\/" is not an origin/),
      expect.stringMatching(/^allowedOrigins\.2: "https:\/\/app\.example\.com\/path" is not an origin/),
      expect.stringMatching(/^allowedOrigins\.3: "ftp:\/\/x" is not an origin/),
      expect.stringMatching(/^allowedOrigins\.4: "null" is not an origin/),
    ]);
  });

  test('a list with no entries is refused', () => {
    expect(() => configFromEnv({ HUB_ALLOWED_HOSTS: ' , ' })).toThrow(/allowedHosts: must NOT have fewer than 1 items/);
  });
});
