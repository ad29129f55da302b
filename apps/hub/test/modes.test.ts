import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { capturePath } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub, type HubConfig } from '../src';

/** The hub's MCP modes from its configuration: toolsets, read-only, stateless, and the KFL policy, against a real worker. */

let worker: RunningWorkerServer;
const hubs: Hub[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  const engine = new WorkerEngine('node-m', 'test');
  await engine.replay([capturePath('zeek/http_get.pcap'), capturePath('suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap')]);
  worker = await startWorkerServer(engine, '127.0.0.1', 0);
});

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const h of hubs) await h.app.close();
  await worker.close();
});

async function hub(extra: Partial<HubConfig>): Promise<Client> {
  const h = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [worker.address], ...extra }), { logger: false });
  hubs.push(h);
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const client = new Client({ name: 'modes', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(h.app.server.address() as { port: number }).port}/mcp`)));
  clients.push(client);
  return client;
}

test('HUB_TOOLSETS and HUB_READ_ONLY decide what tools/list offers', async () => {
  const client = await hub({ toolsets: ['l7', 'snapshots'], readOnly: true });
  const names = (await client.listTools()).tools.map((t) => t.name);
  expect(names).toEqual(expect.arrayContaining(['list_api_calls', 'get_api_call', 'get_api_stats', 'list_snapshots', 'get_snapshot']));
  expect(names.filter((n) => ['list_l4_flows', 'create_snapshot', 'delete_snapshot', 'export_pcap', 'get_status'].includes(n))).toEqual([]);
});

test('stateless mode serves the SDK client without sessions', async () => {
  const client = await hub({ stateless: true });
  const r = (await client.callTool({ name: 'list_api_calls', arguments: { protocol: 'http' } })) as CallToolResult;
  expect(r.isError).toBeFalsy();
  expect((r.structuredContent as { calls: { path: string }[] }).calls.map((c) => c.path)).toEqual(['/download/CHANGES.bro-aux.txt']);
});

test('the configured global filter narrows every query; macros are usable in kfl', async () => {
  const client = await hub({ kflGlobal: 'dns', kflMacros: { google: '"google.com" in dns_questions' } });
  const all = (await client.callTool({ name: 'list_api_calls', arguments: {} })) as CallToolResult;
  const calls = (all.structuredContent as { calls: { protocol: string; path: string }[] }).calls;
  expect(calls.length).toBeGreaterThan(0);
  expect(calls.every((c) => c.protocol === 'dns')).toBe(true);
  const google = (await client.callTool({ name: 'apply_filter', arguments: { kfl: 'google' } })) as CallToolResult;
  const out = google.structuredContent as { matched: number; normalized: string; applied: string };
  expect(out.normalized).toBe('"google.com" in dns_questions');
  expect(out.applied).toBe('(dns) && ("google.com" in dns_questions)');
  expect(out.matched).toBe(calls.filter((c) => c.path.replace(/\.$/, '') === 'google.com').length);
});
