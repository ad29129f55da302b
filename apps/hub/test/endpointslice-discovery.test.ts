import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { discoveryFor } from '../src/app';
import { configFromEnv } from '../src/config';
import { EndpointSliceDiscovery, addressesOf } from '../src/endpointslice-discovery';

/**
 * Worker discovery from EndpointSlices against a fake API server on 127.0.0.1 answering the
 * real discovery.k8s.io/v1 list shape: ready endpoints become workers, removed ones go, errors
 * keep what is known, the token is sent and re-read.
 */

const slice = (endpoints: { ip: string; ready?: boolean }[], port?: number) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'kubeshark-worker-abcde', namespace: 'kubeshark', labels: { 'kubernetes.io/service-name': 'kubeshark-worker' } },
  addressType: endpoints.some((e) => e.ip.includes(':')) ? 'IPv6' : 'IPv4',
  ports: port ? [{ name: 'grpc', port, protocol: 'TCP' }] : null,
  endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true }, nodeName: `node-${e.ip}` })),
});

let server: http.Server;
let base: string;
let dir: string;
let answer: { status: number; body: unknown } = { status: 200, body: { kind: 'EndpointSliceList', items: [] } };
const seen: { url: string; auth: string }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'eps-'));
  writeFileSync(path.join(dir, 'token'), 'token-1\n');
  server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', auth: req.headers.authorization ?? '' });
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

class Sink {
  workers = new Set<string>();
  add(a: string): void {
    this.workers.add(a);
  }
  remove(a: string): void {
    this.workers.delete(a);
  }
}

test('ready endpoints become workers; changes add and remove them; a failed list keeps them', async () => {
  const errors: string[] = [];
  const d = new EndpointSliceDiscovery({ namespace: 'kubeshark', service: 'kubeshark-worker', port: 50151, intervalMs: 60_000, apiUrl: base, tokenFile: path.join(dir, 'token'), onError: (e) => errors.push(e.message) });
  const sink = new Sink();
  answer = { status: 200, body: { items: [slice([{ ip: '10.0.0.1' }, { ip: '10.0.0.2' }, { ip: '10.0.0.3', ready: false }])] } };
  d.start(sink);
  await d.ready();
  expect([...sink.workers].sort()).toEqual(['10.0.0.1:50151', '10.0.0.2:50151']);
  expect(seen[seen.length - 1]).toEqual({ url: '/apis/discovery.k8s.io/v1/namespaces/kubeshark/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubeshark-worker', auth: 'Bearer token-1' });

  answer = { status: 200, body: { items: [slice([{ ip: '10.0.0.2' }, { ip: '10.0.0.3' }])] } };
  writeFileSync(path.join(dir, 'token'), 'token-2\n');
  await d.refresh(sink);
  expect([...sink.workers].sort()).toEqual(['10.0.0.2:50151', '10.0.0.3:50151']);
  expect(seen[seen.length - 1]!.auth).toBe('Bearer token-2');

  answer = { status: 403, body: { kind: 'Status', message: 'forbidden' } };
  await d.refresh(sink);
  expect([...sink.workers].sort()).toEqual(['10.0.0.2:50151', '10.0.0.3:50151']);
  expect(errors[errors.length - 1]).toMatch(/may not list endpointslices in kubeshark \(403\)/);

  answer = { status: 200, body: { items: [] } };
  await d.refresh(sink);
  expect([...sink.workers]).toEqual([]);
  d.stop();
});

test('slice ports named grpc win; IPv6 is bracketed; FQDN slices are skipped', () => {
  expect(addressesOf({ items: [slice([{ ip: 'fd00::5' }], 60000), { ...slice([{ ip: 'worker.example' }]), addressType: 'FQDN' }] }, 50151)).toEqual(['[fd00::5]:60000']);
});

test('HUB_WORKERS_K8S configures it, alone or with the static list; a malformed value is refused', () => {
  const cfg = configFromEnv({ HUB_WORKERS_K8S: 'kubeshark/kubeshark-worker:50151', HUB_KUBE_API: base, HUB_KUBE_TOKEN_FILE: path.join(dir, 'token') });
  expect(cfg.workers).toEqual([]);
  expect(discoveryFor(cfg).description).toBe('endpointslices kubeshark/kubeshark-worker:50151 every 10000 ms');
  expect(() => configFromEnv({ HUB_WORKERS_K8S: 'kubeshark-worker:50151' })).toThrow(/workersK8s/);
});
