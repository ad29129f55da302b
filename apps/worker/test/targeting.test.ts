import { spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createWorkerClient, type Flow, type WorkerClient, type WorkerStatus } from '@kubeshark-mcp/proto';
import { canCaptureLive, grpcUnary, startWorkerProcess, waitFor } from '@kubeshark-mcp/testkit';
import { DEFAULT_LIVE_OPTIONS, WorkerEngine, clusterMapSource, hostFilter, startWorkerServer, type RunningWorkerServer } from '../src';
import { parseKubeObject } from '../src/k8s';

/**
 * Targeting: live capture limited to the pods of some namespaces, as a BPF filter built from their
 * addresses. Pods get loopback addresses in a generated cluster map, UDP datagrams go to targeted
 * and untargeted pods, and the worker's flows must hold only the targeted ones. Once as the real
 * `serve` process with its flags, once in process with pods coming and going.
 *
 * Needs tcpdump and root (CI has both); elsewhere the live part is skipped with the reason printed.
 */

const canCapture = canCaptureLive('targeting tests');
const live = canCapture ? describe : describe.skip;

const CLI = path.join(__dirname, '..', 'dist', 'cli.js');
const NODE = 'target-node';
const SHOP_IP = '127.0.0.31';
const DATA_IP = '127.0.0.32';
const SYSTEM_IP = '127.0.0.33';
const NEW_IP = '127.0.0.34';

const podJson = (name: string, namespace: string, ip: string, node = NODE) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, uid: `uid-${name}`, creationTimestamp: '2020-01-01T00:00:00Z' },
  spec: { nodeName: node, containers: [{ name: 'main', image: 'x' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], startTime: '2020-01-01T00:00:00Z' },
});

const tmp = mkdtempSync(path.join(tmpdir(), 'worker-targeting-'));
const mapFile = path.join(tmp, 'map.json');
writeFileSync(
  mapFile,
  JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [podJson('web-1', 'shop', SHOP_IP), podJson('db-0', 'data', DATA_IP), podJson('dns-0', 'kube-system', SYSTEM_IP)] }),
);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sockets: dgram.Socket[] = [];
afterAll(() => sockets.forEach((s) => s.close()));

/** A UDP receiver on ip:0; returns its port. */
async function receiver(ip: string): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('message', () => undefined);
  await new Promise<void>((r) => s.bind(0, ip, r));
  sockets.push(s);
  return s.address().port;
}

async function send(dst: string, port: number, n: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (let i = 0; i < n; i++) await new Promise<void>((resolve, reject) => s.send(Buffer.from(`t-${i}`), port, dst, (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((r) => s.close(r));
}

const flowsTo = async (client: WorkerClient, ip: string, port: number): Promise<Flow[]> =>
  (await grpcUnary<{ flows: Flow[] }>(client, 'ListFlows', { ip, port, limit: 100 })).flows;

describe('the targeting filter', () => {
  test('one host term per address, networks when there are too many, nothing when there is none, everything beyond that', () => {
    expect(hostFilter(['10.0.0.2', '10.0.0.1', '10.0.0.2'])).toEqual({ mode: 'hosts', expr: 'host 10.0.0.1 or host 10.0.0.2' });
    expect(hostFilter([])).toEqual({ mode: 'none', expr: 'less 1' });
    const nets = hostFilter(['10.0.1.5', '10.0.1.6', '10.0.2.7', 'fd00:1:2:3::9'], 3);
    expect(nets.mode).toBe('nets');
    expect(nets.expr).toBe('net 10.0.1.0/24 or net 10.0.2.0/24 or net fd00:1:2:3::/64');
    expect(nets.warning).toMatch(/4 addresses.*3 networks/);
    const all = hostFilter(['10.0.1.5', '10.0.2.6', '10.0.3.7'], 2);
    expect(all).toMatchObject({ mode: 'all', expr: '' });
    expect(all.warning).toMatch(/not applied/);
  });

  test('serve refuses targeting without live capture or without a Kubernetes source', () => {
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(tmp, 'refused'), ...args], { encoding: 'utf8' });
    const noIface = run(['--target-namespaces', 'shop', '--cluster-map', mapFile]);
    expect(noIface.status).toBe(2);
    expect(noIface.stderr).toMatch(/apply to live capture: add --interface/);
    const noKube = run(['--interface', 'lo', '--target-namespaces', 'shop']);
    expect(noKube.status).toBe(2);
    expect(noKube.stderr).toMatch(/needs a Kubernetes source.*--cluster-map FILE or --kube-watch/);
    const badRe = run(['--interface', 'lo', '--cluster-map', mapFile, '--target-pod-regex', '(']);
    expect(badRe.status).toBe(2);
    expect(badRe.stderr).toMatch(/--target-pod-regex is not a valid regular expression/);
  });
});

live('serve --target-namespaces on lo', () => {
  let proc: ChildProcess;
  let client: WorkerClient;
  let grpcPort = '';

  beforeAll(async () => {
    const started = await startWorkerProcess(['--listen', '127.0.0.1:0', '--node', NODE, '--interface', 'lo', '--bpf', 'udp', '--cluster-map', mapFile, '--target-namespaces', 'shop', '--data-dir', path.join(tmp, 'serve')]);
    proc = started.proc;
    grpcPort = /:(\d+)$/.exec(started.address)![1]!;
    client = createWorkerClient(started.address);
  });

  afterAll(async () => {
    client?.close();
    if (proc && proc.exitCode === null) {
      // SIGTERM: the worker stops its tcpdump before it exits.
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
  });

  test('only the targeted pod traffic is captured, and GetStatus says what is targeted', async () => {
    const shopPort = await receiver(SHOP_IP);
    const dataPort = await receiver(DATA_IP);
    await send(DATA_IP, dataPort, 3);
    await send(SHOP_IP, shopPort, 4);
    const flows = await waitFor('the shop flow', async () => ((f) => (f.length ? f : undefined))(await flowsTo(client, SHOP_IP, shopPort)));
    expect(flows.map((f) => f.client_to_server!.packets)).toEqual([4]);
    expect(flows[0]!.server).toMatchObject({ ip: SHOP_IP, namespace: 'shop', pod: 'web-1' });
    // Sent before the shop datagrams, so they would have arrived by now had they been captured.
    expect(await flowsTo(client, DATA_IP, dataPort)).toEqual([]);
    const status = await grpcUnary<WorkerStatus>(client, 'GetStatus', {});
    expect(status.targeting).toMatchObject({
      namespaces: ['shop'],
      excluded_namespaces: [],
      pod_regex: '',
      pods: 1,
      pod_ips: 1,
      scope: 'node',
      mode: 'hosts',
      target_filter: `host ${SHOP_IP}`,
      filter: `((host ${SHOP_IP}) and (udp)) and not (tcp port ${grpcPort})`,
      updates: 0,
    });
    expect(status.sources[0]!.filter).toBe(status.targeting!.filter);
    expect(status.targeting!.checked_at_us).toBeGreaterThan(0);
  });
});

live('targeting follows pods as they come and go', () => {
  let engine: WorkerEngine;
  let server: RunningWorkerServer;
  let client: WorkerClient;

  beforeAll(async () => {
    engine = new WorkerEngine(NODE, 'test');
    engine.kube = clusterMapSource([mapFile]);
    server = await startWorkerServer(engine, '127.0.0.1', 0);
    client = createWorkerClient(server.address);
    await engine.startTargetedLive(
      { ...DEFAULT_LIVE_OPTIONS, interface: 'lo', bpf: 'udp', excludeTcpPorts: [server.port], statsIntervalMs: 500 },
      { namespaces: [], excludeNamespaces: ['kube-system'], intervalMs: 100 },
    );
  });

  afterAll(async () => {
    client?.close();
    await engine?.close();
    await server?.close();
  });

  test('a new pod is captured once the filter is rebuilt; a deleted one no longer is; excluded namespaces never are', async () => {
    expect(engine.targetingStatus()).toMatchObject({ pods: 2, podIps: 2, targetFilter: `host ${SHOP_IP} or host ${DATA_IP}`, updates: 0 });
    const systemPort = await receiver(SYSTEM_IP);
    const newPort = await receiver(NEW_IP);
    const shopPort = await receiver(SHOP_IP);
    await send(SYSTEM_IP, systemPort, 2);

    const pod = parseKubeObject(podJson('web-3', 'shop', NEW_IP), 'test');
    if (pod.kind !== 'Pod') throw new Error('not a pod');
    engine.kube!.resolver.apply(pod, Date.now() * 1000);
    await waitFor('the filter to take in the new pod', async () => (engine.targetingStatus()?.updates === 1 ? true : undefined));
    expect(engine.targetingStatus()).toMatchObject({ pods: 3, podIps: 3, targetFilter: `host ${SHOP_IP} or host ${DATA_IP} or host ${NEW_IP}` });
    expect(engine.sources()[0]!.live!.filter).toBe(`((host ${SHOP_IP} or host ${DATA_IP} or host ${NEW_IP}) and (udp)) and not (tcp port ${server.port})`);
    await send(NEW_IP, newPort, 3);
    const flows = await waitFor('the new pod flow', async () => ((f) => (f.length ? f : undefined))(await flowsTo(client, NEW_IP, newPort)));
    expect(flows.map((f) => f.client_to_server!.packets)).toEqual([3]);

    const web1 = parseKubeObject(podJson('web-1', 'shop', SHOP_IP), 'test');
    if (web1.kind !== 'Pod') throw new Error('not a pod');
    engine.kube!.resolver.remove(web1, Date.now() * 1000);
    await waitFor('the filter to drop the deleted pod', async () => (engine.targetingStatus()?.updates === 2 ? true : undefined));
    expect(engine.targetingStatus()!.targetFilter).toBe(`host ${DATA_IP} or host ${NEW_IP}`);
    await send(SHOP_IP, shopPort, 2);
    await send(NEW_IP, newPort, 1);
    await waitFor('the later datagram to the new pod', async () => ((f) => (f[0]?.client_to_server!.packets === 1 ? f : undefined))(await flowsTo(client, NEW_IP, newPort).then((f) => f.filter((x) => x.client_to_server!.packets === 1))));
    expect(await flowsTo(client, SHOP_IP, shopPort)).toEqual([]);
    expect(await flowsTo(client, SYSTEM_IP, systemPort)).toEqual([]);
    // Each rebuild restarted tcpdump; the moments between are recorded as gaps, not hidden.
    expect(engine.sources()[0]!.state).toBe('capturing');
  });
});

live('a pod event rebuilds the filter at once, without waiting for the periodic check', () => {
  let engine: WorkerEngine;

  beforeAll(async () => {
    engine = new WorkerEngine(NODE, 'test');
    engine.kube = clusterMapSource([mapFile]);
    await engine.startTargetedLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', bpf: 'udp port 9' }, { namespaces: ['shop'], excludeNamespaces: [], intervalMs: 600_000 });
  });

  afterAll(() => engine?.close());

  test('retargetSoon after a pod change', async () => {
    const pod = parseKubeObject(podJson('web-9', 'shop', '127.0.0.39'), 'test');
    if (pod.kind !== 'Pod') throw new Error('not a pod');
    engine.kube!.resolver.apply(pod, Date.now() * 1000);
    // The periodic check is ten minutes away: nothing changes by itself.
    await new Promise((r) => setTimeout(r, 500));
    expect(engine.targetingStatus()).toMatchObject({ updates: 0, targetFilter: `host ${SHOP_IP}` });
    engine.retargetSoon();
    engine.retargetSoon();
    await waitFor('the rebuilt filter', async () => (engine.targetingStatus()?.updates === 1 ? true : undefined), 5000);
    expect(engine.targetingStatus()).toMatchObject({ pods: 2, targetFilter: `host ${SHOP_IP} or host 127.0.0.39` });
    expect(engine.sources()[0]!.state).toBe('capturing');
  });
});
