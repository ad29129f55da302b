import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { capturePath } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';
import { node22, rootPackageDir } from './support/node22';

/**
 * The official MCP conformance runner (@modelcontextprotocol/conformance, on Node 22) against
 * the hub on loopback, with a real worker behind it over gRPC, for every server scenario that
 * does not need the conformance "everything server" fixtures. The others call tools, resources
 * and prompts that only that fixture server has (test_simple_text, test://static-text,
 * test_prompt_with_arguments, ...): they test an SDK, not a product, and would need the hub to
 * ship fake tools, which it must not.
 */

/** Scenarios that exercise the protocol itself, run against the hub as it is configured by default. */
const APPLICABLE = [
  'server-initialize',
  'ping',
  'logging-set-level',
  'tools-list',
  'resources-list',
  'prompts-list',
  'server-sse-multiple-streams',
  'dns-rebinding-protection',
];

/** Scenarios that need a fixture of the everything server, with the fixture each one calls. */
const NOT_APPLICABLE: Record<string, string> = {
  'completion-complete': 'prompt test_prompt_with_arguments',
  'tools-call-simple-text': 'tool test_simple_text',
  'tools-call-image': 'tool test_image_content',
  'tools-call-audio': 'tool test_audio_content',
  'tools-call-embedded-resource': 'tool test_embedded_resource',
  'tools-call-mixed-content': 'tool test_multiple_content_types',
  'tools-call-with-logging': 'tool test_tool_with_logging',
  'tools-call-error': 'tool test_error_handling',
  'tools-call-with-progress': 'tool test_tool_with_progress',
  'tools-call-sampling': 'tool test_sampling',
  'tools-call-elicitation': 'tool test_elicitation',
  'json-schema-2020-12': 'tool json_schema_2020_12_tool',
  'elicitation-sep1034-defaults': 'tool test_elicitation_sep1034_defaults',
  'elicitation-sep1330-enums': 'tool test_elicitation_sep1330_enums',
  'server-sse-polling': 'tool test_reconnection',
  'resources-read-text': 'resource test://static-text',
  'resources-read-binary': 'resource test://static-binary',
  'resources-templates-read': 'template test://template/{id}/data',
  'resources-subscribe': 'resource test://watched-resource',
  'resources-unsubscribe': 'resource test://watched-resource',
  'prompts-get-simple': 'prompt test_simple_prompt',
  'prompts-get-with-args': 'prompt test_prompt_with_arguments',
  'prompts-get-embedded-resource': 'prompt test_prompt_with_embedded_resource',
  'prompts-get-with-image': 'prompt test_prompt_with_image',
};

interface Check {
  id: string;
  name: string;
  status: string;
  errorMessage?: string;
}

interface Ran {
  code: number;
  output: string;
}

let worker: RunningWorkerServer;
let hub: Hub;
let url: string;
let node: string;
let cli: string;
const outDir = mkdtempSync(path.join(tmpdir(), 'hub-conformance-'));

function conformance(args: string[], timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(node, [cli, ...args], { cwd: outDir, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

beforeAll(async () => {
  node = await node22();
  cli = path.join(rootPackageDir('@modelcontextprotocol/conformance'), 'dist', 'index.js');
  const engine = new WorkerEngine('node-conf', 'test');
  await engine.replay([capturePath('zeek/http_get.pcap'), capturePath('suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap')]);
  worker = await startWorkerServer(engine, '127.0.0.1', 0);
  hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [worker.address] }), { logger: false });
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`;
}, 330_000);

afterAll(async () => {
  await hub?.app.close();
  await worker?.close();
  rmSync(outDir, { recursive: true, force: true });
});

test('every scenario the runner offers is either run here or listed as needing the everything server', async () => {
  const listed = await conformance(['list', '--server']);
  expect(listed.code).toBe(0);
  const names = [...listed.output.matchAll(/^\s+- (\S+)/gm)].map((m) => m[1]!);
  expect(names.length).toBeGreaterThan(0);
  expect([...names].sort()).toEqual([...APPLICABLE, ...Object.keys(NOT_APPLICABLE)].sort());
});

test.each(APPLICABLE)('conformance scenario %s passes against the hub', async (scenario) => {
  const dir = path.join(outDir, scenario);
  const ran = await conformance(['server', '--url', url, '--scenario', scenario, '--output-dir', dir]);
  const results = readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('checks.json'));
  const checks = results.flatMap((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Check[]);
  const bad = checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
  if (ran.code !== 0 || bad.length > 0 || checks.length === 0) {
    throw new Error(`conformance ${scenario} against ${url}: exit ${ran.code}, ${checks.length} checks, ${bad.length} failed or warned\n${ran.output}`);
  }
  expect(checks.every((c) => c.status === 'SUCCESS' || c.status === 'INFO')).toBe(true);
}, 90_000);
