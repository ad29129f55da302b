/**
 * Whether tool results repeat their JSON as a text block: only for clients whose protocol
 * revision predates structured content (or `jsonText: 'always'`), and what the output budget
 * counts in each case. Over real HTTP with the SDK client, and with raw requests for the
 * older revisions the current SDK client no longer sends.
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  CHARS_PER_TOKEN,
  ToolDefinitionError,
  ToolRegistry,
  listL4Flows,
  mcpFastifyPlugin,
  resultChars,
  wantsJsonText,
  type Flow,
  type McpPluginOptions,
} from '../src/index';
import { MemorySource, manyFlows, summaryWithHandshake, tcpFlow } from './memory-source';

const started: FastifyInstance[] = [];
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const app of started.splice(0)) await app.close();
});

async function start(opts: Partial<McpPluginOptions> = {}, flows: Flow[] = [tcpFlow]): Promise<URL> {
  const app = Fastify({ logger: false });
  await app.register(mcpFastifyPlugin, { source: new MemorySource(flows, [], summaryWithHandshake(2500)), ...opts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  started.push(app);
  return new URL(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/mcp`);
}

async function sdkCall(url: URL, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const client = new Client({ name: 'json-text-test', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(url));
  clients.push(client);
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** The JSON-RPC messages of a response, whether sent as JSON or as SSE events. */
async function messages(res: Response): Promise<Record<string, unknown>[]> {
  const body = await res.text();
  if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
    return body
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>);
  }
  return [JSON.parse(body) as Record<string, unknown>];
}

/** A client speaking `version` with raw HTTP: initialize, initialized, then one tools/call. */
async function rawCall(url: URL, version: string, name: string, args: Record<string, unknown>, sendVersionHeader = true): Promise<CallToolResult> {
  const init = await fetch(url, {
    method: 'POST',
    headers: HEADERS,
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }),
  });
  const [initResult] = await messages(init);
  expect((initResult!.result as { protocolVersion: string }).protocolVersion).toBe(version);
  const session = init.headers.get('mcp-session-id')!;
  const headers = { ...HEADERS, 'mcp-session-id': session, ...(sendVersionHeader ? { 'mcp-protocol-version': version } : {}) };
  const ack = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  expect(ack.status).toBe(202);
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: args } }) });
  expect(res.status).toBe(200);
  const reply = (await messages(res)).find((m) => m.id === 2)!;
  await fetch(url, { method: 'DELETE', headers });
  return reply.result as CallToolResult;
}

const texts = (r: CallToolResult): string[] => r.content.flatMap((c) => (c.type === 'text' ? [c.text] : []));

describe('the JSON text block', () => {
  test('a client on the current revision (SDK client over HTTP) gets the text rendering and structuredContent, not the JSON again', async () => {
    const r = await sdkCall(await start(), 'list_l4_flows', {});
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ flows: [{ id: tcpFlow.id }] });
    const t = texts(r);
    expect(t).toHaveLength(1);
    expect(t[0]).toContain('10.0.0.2');
    expect(() => JSON.parse(t[0]!)).toThrow();
  });

  test.each(['2025-03-26', '2024-11-05'])('a client on %s (before structured content) gets the JSON as a second text block', async (version) => {
    const r = await rawCall(await start(), version, 'list_l4_flows', {});
    const t = texts(r);
    expect(t).toHaveLength(2);
    expect(JSON.parse(t[1]!)).toEqual(r.structuredContent);
  });

  test('2025-06-18 is the first revision without it; a client that sends no version header is taken as 2025-03-26 and gets it', async () => {
    const url = await start();
    expect(texts(await rawCall(url, '2025-06-18', 'list_l4_flows', {}))).toHaveLength(1);
    expect(texts(await rawCall(url, '2025-06-18', 'list_l4_flows', {}, false))).toHaveLength(2);
  });

  test('jsonText "always" sends it to every client; a bad mode is refused at start', async () => {
    const r = await sdkCall(await start({ jsonText: 'always' }), 'list_l4_flows', {});
    const t = texts(r);
    expect(t).toHaveLength(2);
    expect(JSON.parse(t[1]!)).toEqual(r.structuredContent);
    expect(() => new ToolRegistry({ jsonText: 'never' as never })).toThrow(ToolDefinitionError);
  });

  test('wantsJsonText: by revision date; unknown or malformed versions get it', () => {
    expect(wantsJsonText('auto', '2025-11-25')).toBe(false);
    expect(wantsJsonText('auto', '2025-06-18')).toBe(false);
    expect(wantsJsonText('auto', '2025-03-26')).toBe(true);
    expect(wantsJsonText('auto', undefined)).toBe(true);
    expect(wantsJsonText('auto', 'latest')).toBe(true);
    expect(wantsJsonText('always', '2025-11-25')).toBe(true);
  });
});


describe('the output budget counts what the model is shown', () => {
  const maxChars = 8000 * CHARS_PER_TOKEN;

  test('with the JSON block, text and JSON together fit; without it, each fits on its own and a page holds more rows', async () => {
    const flows = manyFlows(1000);
    const url = await start({}, flows);
    const legacy = await rawCall(url, '2025-03-26', 'list_l4_flows', { limit: 1000 });
    const current = await sdkCall(url, 'list_l4_flows', { limit: 1000 });
    const rows = (r: CallToolResult): number => (r.structuredContent as { returned: number }).returned;

    const [legacyText, legacyJson] = texts(legacy);
    expect(legacyText!.length + legacyJson!.length).toBeLessThanOrEqual(maxChars);
    expect(legacyText!.length + legacyJson!.length).toBeGreaterThan(maxChars * 0.9);

    const [currentText] = texts(current);
    const json = JSON.stringify(current.structuredContent);
    expect(currentText!.length).toBeLessThanOrEqual(maxChars);
    expect(json.length).toBeLessThanOrEqual(maxChars);
    // The larger of the two (the JSON) fills the budget.
    expect(Math.max(currentText!.length, json.length)).toBeGreaterThan(maxChars * 0.9);
    expect(rows(current)).toBeGreaterThan(rows(legacy));
    // The pages are the same flows from the start.
    const ids = (r: CallToolResult): string[] => (r.structuredContent as { flows: { id: string }[] }).flows.map((f) => f.id);
    expect(ids(current).slice(0, rows(legacy))).toEqual(ids(legacy));
    for (const r of [legacy, current]) expect(r.structuredContent).toMatchObject({ truncated: true, nextCursor: expect.any(String) });
  });

  test('resultChars: sum with the JSON block (the default), the larger of the two without', () => {
    const out = { structured: { a: 'x'.repeat(100) }, text: 'y'.repeat(50) };
    const json = JSON.stringify(out.structured).length;
    expect(resultChars(out)).toBe(50 + json);
    expect(resultChars(out, { jsonText: true })).toBe(50 + json);
    expect(resultChars(out, { jsonText: false })).toBe(json);
    expect(resultChars({ ...out, text: 'y'.repeat(500) }, { jsonText: false })).toBe(500);
  });

  test('the registry decides from the protocol version given by the caller', async () => {
    const registry = new ToolRegistry();
    registry.register(listL4Flows);
    const source = new MemorySource([tcpFlow]);
    const signal = new AbortController().signal;
    const modern = await registry.call('list_l4_flows', {}, { source, signal, protocolVersion: '2025-11-25' });
    const old = await registry.call('list_l4_flows', {}, { source, signal, protocolVersion: '2025-03-26' });
    expect(texts(modern)).toHaveLength(1);
    expect(texts(old)).toHaveLength(2);
  });
});

test('output validation does not change a result: structuredContent and its JSON text stay the same when the output schema has defaults', async () => {
  const registry = new ToolRegistry({ jsonText: 'always' });
  registry.register({
    name: 'with_default',
    title: 'Output schema with a default',
    description: 'Returns an object without the property its output schema gives a default.',
    inputSchema: { type: 'object', properties: {}, additionalProperties: false },
    outputSchema: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'string', default: 'filled' } }, required: ['a'] },
    annotations: { readOnlyHint: true },
    handler: async () => ({ structured: { a: 1 }, text: 'a=1' }),
  });
  const r = await registry.call('with_default', {}, { source: new MemorySource([]), signal: new AbortController().signal });
  expect(r.structuredContent).toEqual({ a: 1 });
  expect(JSON.parse(texts(r)[1]!)).toEqual(r.structuredContent);
});
