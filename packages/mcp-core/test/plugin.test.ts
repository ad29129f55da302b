import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mcpFastifyPlugin, type McpPluginOptions, type ToolDefinition } from '../src/index';
import { MemorySource, summaryWithHandshake, tcpFlow } from './memory-source';

const INIT_BODY = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
};
const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(25);
  }
}

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

interface Started {
  app: FastifyInstance;
  url: URL;
  source: MemorySource;
}

async function start(opts: Partial<McpPluginOptions> = {}): Promise<Started> {
  const source = new MemorySource([tcpFlow], [], summaryWithHandshake(2500));
  const app = Fastify({ logger: false });
  await app.register(mcpFastifyPlugin, { source, ...opts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { app, source, url: new URL(`http://127.0.0.1:${port}${opts.path ?? '/mcp'}`) };
}

async function connectClient(url: URL): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'plugin-test', version: '0.0.1' });
  const transport = new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  return { client, transport };
}

describe('mcpFastifyPlugin', () => {
  let started: Started | undefined;
  const clients: Client[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
    await started?.app.close();
    started = undefined;
  });

  it('experiment', async () => {
    started = await start({ sessionIdleTimeoutMs: 1000 });
    const { client, transport } = await connectClient(started.url);
    console.log('sessions', started.app.mcp.sessionCount(), transport.sessionId);
    await client.close();
    const t0 = Date.now();
    await waitFor(() => started!.app.mcp.sessionCount() === 0, 4000, 'reap').catch((e) => console.log(String(e)));
    console.log('after', Date.now() - t0, started.app.mcp.sessionCount());
    const r = await fetch(started.url, { method: 'POST', headers: { ...HEADERS, 'mcp-session-id': transport.sessionId! }, body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }) });
    console.log(r.status, await r.text());
  });
});
});
