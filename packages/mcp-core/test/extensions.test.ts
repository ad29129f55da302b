import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ToolDefinitionError, TrafficSourceError, mcpFastifyPlugin, redact, type McpPluginOptions } from '../src/index';
import { CapableSource } from './memory-source';

/**
 * The extension API as another hub plugin uses it (tools, prompts, resources, checked at
 * registration), paginated lists, and logging with redaction, over real HTTP.
 */

const running: { app: FastifyInstance; clients: Client[] }[] = [];

afterEach(async () => {
  for (const { app, clients } of running.splice(0)) {
    for (const c of clients) await c.close().catch(() => undefined);
    await app.close();
  }
});

/** A small plugin of the kind another team would write: one tool, one prompt, one resource and one template. */
async function teamPlugin(app: FastifyInstance): Promise<void> {
  app.mcp.registerTool({
    name: 'team_hello',
    title: 'Hello',
    description: 'says hello',
    inputSchema: { type: 'object', properties: { who: { type: 'string' } }, required: ['who'], additionalProperties: false },
    outputSchema: { type: 'object', properties: { greeting: { type: 'string' } }, required: ['greeting'], additionalProperties: false },
    annotations: { readOnlyHint: true },
    handler: async (args: { who: string }) => ({ structured: { greeting: `hello ${args.who}` }, text: `hello ${args.who}` }),
  });
  app.mcp.registerPrompt({
    name: 'team_runbook',
    title: 'Runbook',
    description: 'our runbook',
    arguments: [{ name: 'service', description: 'which service', required: true }],
    render: (args) => `Check ${args.service} with list_api_calls.`,
  });
  app.mcp.registerResource({ uri: 'team://oncall', name: 'oncall', title: 'On call', description: 'who is on call', mimeType: 'text/plain', requires: [], read: async () => 'alice' });
  app.mcp.registerResource({
    uriTemplate: 'team://runbooks/{name}',
    name: 'runbook',
    title: 'Runbook page',
    description: 'one runbook page',
    mimeType: 'text/plain',
    requires: [],
    match: (uri) => (uri.startsWith('team://runbooks/') ? { name: uri.slice('team://runbooks/'.length) } : undefined),
    read: async (params: Record<string, string>) => `runbook ${params.name}`,
  });
}

async function start(opts: Partial<McpPluginOptions>, source = new CapableSource(), plugin = teamPlugin): Promise<Client> {
  const app = Fastify({ logger: false });
  await app.register(mcpFastifyPlugin, { source, ...opts });
  await app.register(plugin);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const client = new Client({ name: 'ext', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/mcp`)));
  running.push({ app, clients: [client] });
  return client;
}

test('another plugin adds a tool, a prompt, a resource and a template, served next to the built-ins', async () => {
  const client = await start({});
  expect((await client.listTools()).tools.map((t) => t.name)).toContain('team_hello');
  const r = (await client.callTool({ name: 'team_hello', arguments: { who: 'ops' } })) as CallToolResult;
  expect(r.structuredContent).toEqual({ greeting: 'hello ops' });
  expect((await client.listPrompts()).prompts.map((p) => p.name)).toContain('team_runbook');
  expect(((await client.getPrompt({ name: 'team_runbook', arguments: { service: 'payment' } })).messages[0]!.content as { text: string }).text).toBe('Check payment with list_api_calls.');
  expect((await client.listResources()).resources.map((x) => x.uri)).toContain('team://oncall');
  expect((await client.readResource({ uri: 'team://oncall' })).contents[0]).toMatchObject({ text: 'alice' });
  expect((await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate)).toContain('team://runbooks/{name}');
  expect((await client.readResource({ uri: 'team://runbooks/db' })).contents[0]).toMatchObject({ text: 'runbook db' });
});

test('bad or duplicate registrations fail at start-up', async () => {
  const cases: ((app: FastifyInstance) => void)[] = [
    (app) => app.mcp.registerPrompt({ name: 'network_health', title: 't', description: 'd', arguments: [], render: () => '' }),
    (app) => app.mcp.registerPrompt({ name: 'bad name!', title: 't', description: 'd', arguments: [], render: () => '' }),
    (app) => app.mcp.registerResource({ uri: 'kubeshark://workers', name: 'w', title: 't', description: 'd', mimeType: 'text/plain', requires: [], read: async () => '' }),
    (app) => app.mcp.registerResource({ uri: 'not a uri', name: 'w', title: 't', description: 'd', mimeType: 'text/plain', requires: [], read: async () => '' }),
    (app) =>
      app.mcp.registerResource({ uriTemplate: 'team://fixed', name: 'w', title: 't', description: 'd', mimeType: 'text/plain', requires: [], match: () => undefined, read: async () => '' }),
  ];
  for (const register of cases) {
    const app = Fastify({ logger: false });
    await app.register(mcpFastifyPlugin, { source: new CapableSource() });
    await expect(app.register(async (a) => register(a)).ready()).rejects.toThrow(ToolDefinitionError);
    await app.close();
  }
});

test('tools/list, prompts/list and resources/list are paged; a forged cursor is invalid params', async () => {
  const client = await start({ listPageSize: 3 });
  const all: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const r = await client.listTools(cursor ? { cursor } : {});
    expect(r.tools.length).toBeLessThanOrEqual(3);
    all.push(...r.tools.map((t) => t.name));
    cursor = r.nextCursor;
    pages++;
  } while (cursor && pages < 50);
  expect(pages).toBeGreaterThan(3);
  expect(new Set(all).size).toBe(all.length);
  expect(all).toContain('team_hello');
  expect(all).toContain('list_l4_flows');
  const prompts = await client.listPrompts();
  expect(prompts.prompts).toHaveLength(3);
  expect(prompts.nextCursor).toBeDefined();
  const err = await client.listTools({ cursor: 'bogus' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(McpError);
  expect((err as McpError).code).toBe(-32602);
});

test('logging: warnings by default, everything after logging/setLevel debug, secrets redacted', async () => {
  const source = new CapableSource();
  const client = await start({}, source);
  const messages: { level: string; data: unknown }[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    messages.push({ level: n.params.level, data: n.params.data });
  });
  await client.callTool({ name: 'get_status', arguments: {} });
  source.failures.set('getStatus', new TrafficSourceError('unavailable', 'worker at 10.0.0.9 refused: Authorization: Bearer abcdefghijklmnop'));
  await client.callTool({ name: 'get_status', arguments: {} });
  await new Promise((r) => setTimeout(r, 100));
  expect(messages.map((m) => m.level)).toEqual(['warning']);
  const text = JSON.stringify(messages[0]!.data);
  expect(text).toContain('tool_error');
  expect(text).not.toContain('abcdefghijklmnop');
  expect(text).toContain('[REDACTED]');
  await client.setLoggingLevel('debug');
  await client.callTool({ name: 'get_status', arguments: {} });
  await new Promise((r) => setTimeout(r, 100));
  expect(messages.map((m) => m.level)).toEqual(['warning', 'debug']);
});

test('redaction masks credentials in headers, parameters, tokens and URLs', () => {
  expect(redact('Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc')).not.toMatch(/eyJ/);
  expect(redact('cookie: session=abc123; theme=dark')).toBe('cookie: [REDACTED]; theme=dark');
  expect(redact('GET /login?user=bob&password=hunter2&x=1')).toBe('GET /login?user=bob&password=[REDACTED]&x=1');
  expect(redact('{"api_key": "sk-123456"}')).toBe('{"api_key": "[REDACTED]"}');
  expect(redact('postgres://app:s3cret@db:5432/shop')).toBe('postgres://[REDACTED]@db:5432/shop');
  expect(redact('status_code >= 500 and nothing secret')).toBe('status_code >= 500 and nothing secret');
});
