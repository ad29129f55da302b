import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { capturePath } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';
import { node22, rootPackageDir } from './support/node22';

/**
 * The MCP Inspector's CLI mode (@modelcontextprotocol/inspector --cli, on Node 22) against a
 * running hub with a real worker behind it: tools/list gives the catalogue, tools/call gives the
 * worker's data. Expected values come from the SDK client on the same hub and from the captures.
 */

let worker: RunningWorkerServer;
let hub: Hub;
let url: string;
let node: string;
let launcher: string;
let sdk: Client;
const home = mkdtempSync(path.join(tmpdir(), 'hub-inspector-'));

interface InspectorResult<T> {
  result: T;
}

/** Runs `inspector --cli <url> --format json -q ...` and parses its one JSON object. */
function inspector<T>(args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, HOME: home, MCP_CATALOG_PATH: path.join(home, 'mcp.json'), MCP_CLIENT_CONFIG_PATH: path.join(home, 'client.json'), NO_COLOR: '1' };
    execFile(node, [launcher, '--cli', url, '--transport', 'http', '--format', 'json', '-q', ...args], { env, cwd: home, timeout: 60_000, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`inspector ${args.join(' ')} failed (${String(err.code)}):\n${stdout}\n${stderr}`));
        return;
      }
      try {
        resolve((JSON.parse(stdout) as InspectorResult<T>).result);
      } catch (e) {
        reject(new Error(`inspector ${args.join(' ')}: not JSON (${(e as Error).message}):\n${stdout}\n${stderr}`));
      }
    });
  });
}

beforeAll(async () => {
  node = await node22();
  launcher = path.join(rootPackageDir('@modelcontextprotocol/inspector'), 'clients', 'launcher', 'build', 'index.js');
  const engine = new WorkerEngine('node-insp', 'test');
  await engine.replay([capturePath('zeek/http_get.pcap'), capturePath('suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap')]);
  worker = await startWorkerServer(engine, '127.0.0.1', 0);
  hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [worker.address] }), { logger: false });
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`;
  sdk = new Client({ name: 'inspector-test', version: '0' });
  await sdk.connect(new StreamableHTTPClientTransport(new URL(url)));
}, 330_000);

afterAll(async () => {
  await sdk?.close().catch(() => undefined);
  await hub?.app.close();
  await worker?.close();
  rmSync(home, { recursive: true, force: true });
});

test('inspector --cli --method tools/list lists the catalogue', async () => {
  const listed = await inspector<{ tools: Tool[] }>(['--method', 'tools/list']);
  const expected = (await sdk.listTools()).tools;
  expect(listed.tools.map((t) => t.name)).toEqual(expected.map((t) => t.name));
  expect(listed.tools.map((t) => t.name)).toEqual(expect.arrayContaining(['list_l4_flows', 'get_l4_flow_summary', 'list_api_calls', 'get_api_call', 'get_status']));
  for (const tool of listed.tools) {
    expect(tool.inputSchema.type).toBe('object');
    expect(tool.outputSchema?.type).toBe('object');
  }
  expect(listed.tools.find((t) => t.name === 'list_api_calls')?.annotations?.readOnlyHint).toBe(true);
}, 90_000);

test('inspector --cli tools/call get_l4_flow_summary gives the worker totals', async () => {
  const r = await inspector<CallToolResult>(['--method', 'tools/call', '--tool-name', 'get_l4_flow_summary']);
  expect(r.isError).toBeFalsy();
  const s = r.structuredContent as { total_flows: number; total_packets: number; total_bytes: number; tcp: { flows: number }; udp: { flows: number }; nodes: { node: string; state: string }[] };
  // http_get.pcap: one TCP connection; the DNS capture: three UDP exchanges with 8.8.8.8.
  expect(s.total_flows).toBe(4);
  expect(s.tcp.flows).toBe(1);
  expect(s.udp.flows).toBe(3);
  expect(s.total_packets).toBe(20);
  expect(s.nodes).toEqual([{ node: 'node-insp', state: 'ok' }]);
  const direct = (await sdk.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
  expect(r.structuredContent).toEqual(direct.structuredContent);
  expect(r.content.length).toBeGreaterThan(0);
}, 90_000);

test('inspector --cli tools/call list_api_calls gives the worker API calls', async () => {
  const r = await inspector<CallToolResult>(['--method', 'tools/call', '--tool-name', 'list_api_calls', '--tool-args-json', JSON.stringify({ protocol: 'http' })]);
  expect(r.isError).toBeFalsy();
  const calls = (r.structuredContent as { calls: { id: string; method: string; path: string; status_code: number }[] }).calls;
  expect(calls.map((c) => [c.method, c.path, c.status_code])).toEqual([['GET', '/download/CHANGES.bro-aux.txt', 200]]);
  const direct = (await sdk.callTool({ name: 'list_api_calls', arguments: { protocol: 'http' } })) as CallToolResult;
  expect(r.structuredContent).toEqual(direct.structuredContent);

  const dns = await inspector<CallToolResult>(['--method', 'tools/call', '--tool-name', 'list_api_calls', '--tool-arg', 'protocol=dns', 'limit=2']);
  const page = dns.structuredContent as { calls: { protocol: string }[]; returned: number; nextCursor?: string };
  expect(page.returned).toBe(2);
  expect(page.calls.every((c) => c.protocol === 'dns')).toBe(true);
  expect(page.nextCursor).toEqual(expect.any(String));
}, 90_000);
