import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ToolRegistry, createMcpServer, toolsFor, type ToolRegistryOptions, type TrafficSource } from '../src/index';

/**
 * An MCP server over `source` (the tools its capabilities allow) and the SDK client, linked in
 * memory. The client has listed the tools, so it checks every structuredContent against the
 * tool's output schema. `closeInMemory` (in afterEach) closes every pair opened.
 */

const open: { client: Client; server: Server }[] = [];

export async function connectInMemory(source: TrafficSource, options: { registry?: ToolRegistryOptions; liveIntervalMs?: number } = {}): Promise<Client> {
  const registry = new ToolRegistry(options.registry ?? {});
  for (const tool of toolsFor(source)) registry.register(tool);
  const server = createMcpServer({ registry, source, serverInfo: { name: 'test', version: '0' }, ...(options.liveIntervalMs !== undefined ? { liveIntervalMs: options.liveIntervalMs } : {}) });
  const client = new Client({ name: 'test-client', version: '0' });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(b);
  await client.connect(a);
  await client.listTools();
  open.push({ client, server });
  return client;
}

export async function closeInMemory(): Promise<void> {
  for (const { client, server } of open.splice(0)) {
    await client.close();
    await server.close();
  }
}
