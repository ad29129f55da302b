import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createWorkerClient, type WorkerClient } from '@kubeshark-mcp/proto';
import { capturePath, grpcUnary, startWorkerProcess, waitFor } from '@kubeshark-mcp/testkit';

/**
 * `kubeshark-worker serve` with a Kubernetes source, as a real process: --kube-watch against a
 * fake API server on loopback (recorded list responses, watches held open) with a token file,
 * and --cluster-map with a map that has a malformed item. GetStatus reports the source, its
 * state and its errors; ResolveWorkloads answers from it.
 */

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const WATCH = path.join(__dirname, 'fixtures', 'k8s', 'watch');
const MAP = path.join(__dirname, 'fixtures', 'k8s', 'replay-map.json');
const LISTS: Record<string, string> = {
  '/api/v1/pods': 'pods-list-1.json',
  '/api/v1/services': 'services-list.json',
  '/apis/discovery.k8s.io/v1/endpointslices': 'endpointslices-list.json',
  '/api/v1/nodes': 'nodes-list.json',
};
const TOKEN = 'serve-test-token';

const tmp = mkdtempSync(path.join(tmpdir(), 'worker-k8s-serve-'));
const sockets = new Set<Socket>();
const requests: { path: string; auth: string | undefined }[] = [];
const api = http.createServer((req, res) => {
  const u = new URL(req.url ?? '/', 'http://x');
  requests.push({ path: u.pathname, auth: req.headers.authorization });
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    res.writeHead(401, { 'Content-Type': 'application/json' }).end(readFileSync(path.join(WATCH, 'status-401.json')));
    return;
  }
  const file = LISTS[u.pathname];
  if (file === undefined) {
    res.writeHead(404).end();
    return;
  }
  // A watch stays open without events until the test ends.
  if (u.searchParams.get('watch') === '1') res.writeHead(200, { 'Content-Type': 'application/json' }).write('');
  else res.writeHead(200, { 'Content-Type': 'application/json' }).end(readFileSync(path.join(WATCH, file)));
});
api.on('connection', (s) => {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
const procs: ChildProcess[] = [];

async function start(args: string[]): Promise<{ client: WorkerClient; output: () => string }> {
  const { proc, address, output } = await startWorkerProcess(['--listen', '127.0.0.1:0', '--node', 'k8s-serve', '--data-dir', path.join(tmp, String(procs.length)), ...args]);
  procs.push(proc);
  return { client: createWorkerClient(address), output };
}

beforeAll(async () => {
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  writeFileSync(path.join(tmp, 'token'), `${TOKEN}\n`);
});

afterAll(async () => {
  for (const p of procs) {
    if (p.exitCode === null) {
      const exited = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGKILL');
      await exited;
    }
  }
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => api.close(resolve));
  rmSync(tmp, { recursive: true, force: true });
});

interface K8sStatus {
  source: string;
  state: string;
  detail: string;
  pods: number;
  services: number;
  nodes: number;
  errors: string[];
  last_sync_us: number;
}

test('serve --kube-api with a token file lists the API server, reports synced and resolves from it', async () => {
  const url = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const { client } = await start(['--kube-api', url, '--kube-token-file', path.join(tmp, 'token'), '--capture', capturePath('zeek/http_get.pcap')]);
  try {
    const k = await waitFor('the watch to sync', async () => {
      const s = await grpcUnary<{ kubernetes: K8sStatus | null }>(client, 'GetStatus', {});
      return s.kubernetes?.state === 'synced' ? s.kubernetes : undefined;
    });
    expect(k).toMatchObject({ source: 'kube-watch', detail: url, pods: 2, services: 1, nodes: 1, errors: [] });
    expect(Number(k.last_sync_us)).toBeGreaterThan(0);
    expect(requests.filter((r) => r.auth === `Bearer ${TOKEN}`).map((r) => r.path)).toEqual(expect.arrayContaining(Object.keys(LISTS)));
    const w = await grpcUnary<{ workloads: { kind: string; namespace: string; name: string; ips: string[] }[] }>(client, 'ResolveWorkloads', { namespace: 'shop' });
    expect(w.workloads.filter((x) => x.kind === 'pod').map((x) => `${x.name} ${x.ips.join(',')}`)).toContain('web-6d8f7c9b5f-r2x4m 10.244.1.5');
    const ip = await grpcUnary<{ identities: { kind: string; name: string }[] }>(client, 'ResolveIps', { ips: ['10.244.1.5'] });
    expect(ip.identities[0]).toMatchObject({ kind: 'pod', name: 'web-6d8f7c9b5f-r2x4m' });
  } finally {
    client.close();
  }
}, 30_000);

test('serve --cluster-map prints the skipped item once and reports it in GetStatus', async () => {
  const { client, output } = await start(['--cluster-map', MAP, '--capture', capturePath('zeek/http_pipelined-requests.pcap')]);
  try {
    const s = await grpcUnary<{ kubernetes: K8sStatus }>(client, 'GetStatus', {});
    expect(s.kubernetes).toMatchObject({ source: 'cluster-map', state: 'loaded-with-errors', pods: 6, services: 5, nodes: 2 });
    expect(s.kubernetes.errors).toHaveLength(1);
    expect(output().split('\n').filter((l) => l.includes('items[14].status.podIP'))).toHaveLength(1);
    const flows = await waitFor('the replay', async () => {
      const r = await grpcUnary<{ flows: { server: { pod: string; namespace: string } }[] }>(client, 'ListFlows', {});
      return r.flows.length ? r.flows : undefined;
    });
    expect(flows[0]!.server).toMatchObject({ pod: 'user-service-0', namespace: 'production' });
  } finally {
    client.close();
  }
}, 30_000);

test('serve refuses --cluster-map with --kube-watch, and a cluster map that is not JSON', async () => {
  const run = (args: string[]): Promise<{ code: number | null; err: string }> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(tmp, 'refused'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.on('exit', (code) => resolve({ code, err }));
    });
  const both = await run(['--cluster-map', MAP, '--kube-watch']);
  expect(both.code).toBe(2);
  expect(both.err).toContain('give --cluster-map or --kube-watch, not both');
  writeFileSync(path.join(tmp, 'bad.json'), 'apiVersion: v1\nkind: List\n');
  const bad = await run(['--cluster-map', path.join(tmp, 'bad.json')]);
  expect(bad.code).toBe(1);
  expect(bad.err).toMatch(/bad\.json is not JSON/);
}, 30_000);
