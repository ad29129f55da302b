#!/usr/bin/env node
import { existsSync, readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { flowSummaryView, flowView } from '@kubeshark-mcp/mcp-core/model';
import type { FlowTrackerOptions } from '@kubeshark-mcp/capture';
import { GrpcDescriptorError, GrpcJsonDecoder } from '@kubeshark-mcp/dissectors';
import { QueryError, WorkerEngine, type TargetingConfig } from './engine';
import { entrySummary, grpcMessagesJson, type L7Options } from './entries';
import { ClusterMapError, KubeWatchError, clusterMapSource, kubeWatchSource, type KubeSource } from './k8s';
import { DEFAULT_LIVE_OPTIONS, LiveCaptureError } from './live';
import { flowToModel } from './model';
import { startWorkerServer } from './server';
import { SnapshotStore } from './snapshots';
import { expandInputs, InputError } from './sources';
import { PacketStore } from './store';
import { VERSION } from './version';

/** The captures `serve` replays when none are given: shipped with the worker. */
export const DEMO_DIR = path.join(__dirname, '..', 'demo');
/** The cluster map of the demo captures (the shop scenario's namespaces, pods and nodes). */
export const DEMO_CLUSTER_MAP = path.join(DEMO_DIR, 'shop-cluster-map.json');
/** The descriptor set of the demo's gRPC capture (greet.GreetService), so its messages decode to JSON. */
export const DEMO_GRPC_DESCRIPTOR_SET = path.join(DEMO_DIR, 'greet.binpb');
export const DEFAULT_LISTEN = '127.0.0.1:50151';

const USAGE = `kubeshark-worker ${VERSION}

Usage:
  kubeshark-worker serve [--interface IFACE [--bpf EXPR] [--snaplen N] [--buffer-kib N] [--tcpdump PATH]]
                         [--capture PATH]... [--listen HOST:PORT] [--node NAME]
      Capture live traffic and/or replay capture files into the flow table, and serve it over
      gRPC to the hub.
      --interface IFACE  capture live with tcpdump on IFACE ("any" for all); needs tcpdump and
                         root or the NET_RAW/NET_ADMIN capabilities. The worker's own gRPC port
                         is never captured.
      --bpf EXPR         capture filter (tcpdump syntax), e.g. "tcp port 80 or udp port 53"
      --snaplen N        bytes kept per packet (default ${DEFAULT_LIVE_OPTIONS.snaplen})
      --buffer-kib N     kernel capture buffer (default ${DEFAULT_LIVE_OPTIONS.bufferKiB} KiB)
      --capture PATH     replay pcap/pcapng files (optionally gzip'd; a directory means every
                         capture in it). With neither --interface nor --capture, the demo
                         captures shipped in ${DEMO_DIR} are replayed, with
                         the demo cluster map (unless --cluster-map or --kube-watch is given)
                         and the descriptor set of its gRPC capture (unless
                         --grpc-descriptor-set is given).
      --data-dir DIR     packet ring (for PCAP export) and snapshots (default: a folder
                         kubeshark-worker-NODE in the system temp directory). The ring starts
                         empty at every start; snapshots persist.
      --store-max-mib N  size of the packet ring (default 1024); the oldest packets go first
      --store-max-age S  drop packets older than S seconds (default: no age limit)
      --max-flows N      flows kept in memory, least recently seen dropped first
                         (default 200000, about 100 MB)
      --flow-max-age S   drop flows not seen for S seconds (default: keep)
      --udp-idle-timeout S
                         a UDP conversation silent for S seconds resumes as a new flow
                         (default 120 with --interface, else 0: replays number UDP
                         conversations as tshark does)
      --max-entries N    API calls kept in memory, the oldest dropped first (default 100000)
      --body-max-kib N   body bytes kept per request or response (default 4; beyond: truncated)
      --port-map MAP     extra ports each protocol is asked about first, e.g.
                         "http=8081,9000;redis=7000" (streams are still claimed by content)
      --grpc-descriptor-set FILE
                         decode gRPC messages to JSON (get_api_call) with this protobuf
                         FileDescriptorSet: protoc --descriptor_set_out=FILE --include_imports
                         x.proto, or buf build -o FILE. Messages beyond --body-max-kib are
                         not kept, so not decoded.
      --cluster-map FILE Kubernetes identities from a cluster map (repeatable): what
                         kubectl get pods,services,nodes,endpointslices -A -o json prints.
                         Flows and API calls then name pods, Services, namespaces and nodes.
      --kube-watch       Kubernetes identities from the API server (list + watch of pods,
                         services, endpointslices, nodes): in-cluster configuration, or
      --kube-api URL     this API server, with
      --kube-token-file F
                         this bearer token file (default: the service-account token)
      --target-namespaces NS,...
      --exclude-namespaces NS,...
      --target-pod-regex RE
                         live capture only of these pods (needs --interface and --cluster-map
                         or --kube-watch): a BPF filter from the addresses of the pods on this
                         node (every pod when the node is unknown) in the namespaces, not in the
                         excluded ones, whose names match RE; rebuilt as pods come and go
                         (at once on watch events, and checked every 5 s) and AND-ed with --bpf.
      Targeted captures (StartCapture, the hub's capture_traffic) run their own tcpdump on
      --interface (or "any") and keep their packets as snapshots in --data-dir.
      Default listen address: ${DEFAULT_LISTEN}

  kubeshark-worker analyze CAPTURE... --flows|--summary|--entries [--node NAME] [--cluster-map FILE]...
                           [--grpc-descriptor-set FILE]
      Read captures offline, without a cluster, and print one JSON object per line:
      --flows    one line per L4 flow (the fields list_l4_flows returns)
      --summary  one line with totals, TCP vs UDP and top talkers (as get_l4_flow_summary)
      --entries  one line per API call (HTTP/1.x request/response, DNS query/response), in
                 request time order: id, node, protocol, src, dst, flow_id, method, path, url,
                 status_code, elapsed_time (us), timestamp (us since the epoch), error
      Damaged captures: what was read is printed, the error goes to stderr, exit status 1.
      --cluster-map FILE  name the endpoints of flows and entries (see serve)
      --grpc-descriptor-set FILE
                 with --entries, gRPC calls also carry request/response.grpc_messages: each
                 message as JSON, or why it could not be decoded (see serve)

Options:
  --node NAME   node name stamped on flows and flow ids (default: $NODE_NAME or the hostname)
  -h, --help    this text
  --version     print the version
`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  if (!m) throw new UsageError(`--listen must be HOST:PORT (got "${listen}")`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen port must be 0..65535 (got ${port})`);
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * Loads cluster maps; items skipped are printed once to stderr, each with its file and path. An
 * unreadable or non-JSON file is an input error.
 */
function loadMaps(files: readonly string[]): KubeSource {
  try {
    const src = clusterMapSource(files);
    const st = src.status();
    for (const line of st.errors) process.stderr.write(`kubeshark-worker: cluster map: skipped ${line}\n`);
    process.stderr.write(`kubeshark-worker: cluster map: ${st.pods} pods, ${st.services} services, ${st.nodes} nodes, ${st.endpointSlices} endpoint slices from ${files.join(', ')}${st.errors.length ? ` (${st.errors.length} items skipped)` : ''}\n`);
    return src;
  } catch (err) {
    if (err instanceof ClusterMapError) throw new InputError(err.message);
    throw err;
  }
}

/**
 * Reads and loads a FileDescriptorSet at start-up, so a wrong file stops the worker with a
 * clear message instead of failing every call later.
 */
export function loadGrpcDescriptorSet(file: string): GrpcJsonDecoder {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new InputError(`--grpc-descriptor-set ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    return new GrpcJsonDecoder(bytes);
  } catch (err) {
    if (err instanceof GrpcDescriptorError) {
      throw new InputError(`--grpc-descriptor-set ${file}: ${err.message}; write one with protoc --descriptor_set_out=FILE --include_imports x.proto (or buf build -o FILE)`);
    }
    throw err;
  }
}

async function analyze(inputs: string[], opts: { flows: boolean; summary: boolean; entries: boolean; node: string; clusterMaps: string[]; grpcDescriptorSet?: string }): Promise<number> {
  if (inputs.length === 0) throw new UsageError('analyze needs at least one capture file or directory');
  if (!opts.flows && !opts.summary && !opts.entries) throw new UsageError('analyze needs --flows, --summary or --entries to say what to print');
  if (opts.grpcDescriptorSet !== undefined && !opts.entries) throw new UsageError('--grpc-descriptor-set applies to --entries');
  const grpc = opts.grpcDescriptorSet !== undefined ? loadGrpcDescriptorSet(opts.grpcDescriptorSet) : undefined;
  const files = await expandInputs(inputs);
  // Dissection only when entries are asked for; every entry is kept for the printout.
  const engine = new WorkerEngine(opts.node, VERSION, undefined, undefined, {}, opts.entries ? Number.MAX_SAFE_INTEGER : 0);
  if (opts.clusterMaps.length) engine.kube = loadMaps(opts.clusterMaps);
  const ids = engine.identities();
  let failed = 0;
  await engine.replay(files, (file, message) => {
    failed++;
    process.stderr.write(`kubeshark-worker: ${file}: ${message}\n`);
  });
  const out: string[] = [];
  if (opts.flows) {
    for (const rec of engine.tracker.flows.all()) out.push(JSON.stringify(flowView(flowToModel(rec, engine.node, ids))));
  }
  if (opts.entries && engine.entries) {
    for (const e of engine.entries.query({}).entries) {
      const decoded = grpc ? grpcMessagesJson(e.entry, grpc) : null;
      out.push(JSON.stringify(decoded ? { ...entrySummary(e, ids), ...decoded } : entrySummary(e, ids)));
    }
  }
  if (opts.summary) {
    out.push(JSON.stringify(flowSummaryView({ ...engine.summary({}, 10), nodes: [{ node: engine.node, state: 'ok' }] })));
  }
  await writeLines(out);
  return failed > 0 ? 1 : 0;
}

/** Writes lines to stdout, honouring back-pressure; a closed pipe (| head) ends quietly. */
async function writeLines(lines: string[]): Promise<void> {
  const stdout = process.stdout;
  await new Promise<void>((resolve) => {
    stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') resolve();
    });
    let i = 0;
    const pump = (): void => {
      while (i < lines.length) {
        if (!stdout.write(`${lines[i++]}\n`)) {
          stdout.once('drain', pump);
          return;
        }
      }
      resolve();
    };
    pump();
  });
}

interface ServeOptions {
  flowOptions: FlowTrackerOptions;
  maxEntries: number;
  l7: L7Options;
  dataDir: string;
  storeMaxMiB: number;
  storeMaxAgeS?: number;
  captures: string[];
  listen: string;
  node: string;
  interface?: string;
  bpf?: string;
  snaplen: number;
  bufferKiB: number;
  tcpdump: string;
  clusterMaps: string[];
  kubeWatch?: { baseUrl?: string; tokenFile?: string };
  targeting?: TargetingConfig;
}

/** The protocols whose port hints can be configured (those detected on TCP by content). */
const PORT_MAP_PROTOCOLS = ['http', 'http2', 'dns', 'redis', 'postgresql', 'mysql', 'mongodb', 'kafka', 'amqp'];

/** "http=8081,9000;redis=7000" -> { http: [8081, 9000], redis: [7000] }, each part checked. */
export function parsePortMap(text: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const part of text.split(';').map((x) => x.trim()).filter((x) => x !== '')) {
    const m = /^([a-z0-9]+)=([0-9]+(?:,[0-9]+)*)$/.exec(part);
    if (!m) throw new UsageError(`--port-map: "${part}" is not protocol=port[,port...] (e.g. http=8081,9000;redis=7000)`);
    if (!PORT_MAP_PROTOCOLS.includes(m[1]!)) throw new UsageError(`--port-map: unknown protocol "${m[1]}" (known: ${PORT_MAP_PROTOCOLS.join(', ')})`);
    const ports = m[2]!.split(',').map(Number);
    const bad = ports.find((p) => p < 1 || p > 65535);
    if (bad !== undefined) throw new UsageError(`--port-map: port ${bad} of ${m[1]} is not 1-65535`);
    out[m[1]!] = [...(out[m[1]!] ?? []), ...ports];
  }
  return out;
}

function positiveInt(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`${name} must be a positive integer (got "${v}")`);
  return Number(v);
}

async function serve(opts: ServeOptions): Promise<void> {
  const { host, port } = splitHostPort(opts.listen);
  const demo = opts.captures.length === 0 && !opts.interface;
  const inputs = demo ? [DEMO_DIR] : opts.captures;
  const files = await expandInputs(inputs);
  // The demo replays with its cluster map, so its calls name pods, Services and namespaces.
  const clusterMaps = demo && opts.clusterMaps.length === 0 && !opts.kubeWatch && existsSync(DEMO_CLUSTER_MAP) ? [DEMO_CLUSTER_MAP] : opts.clusterMaps;
  // And with the descriptor set of its gRPC capture, so get_api_call shows the messages as JSON.
  const l7 = demo && !opts.l7.grpcDecoder && existsSync(DEMO_GRPC_DESCRIPTOR_SET) ? { ...opts.l7, grpcDecoder: loadGrpcDescriptorSet(DEMO_GRPC_DESCRIPTOR_SET) } : opts.l7;
  const store = PacketStore.open({
    dir: path.join(opts.dataDir, 'ring'),
    maxBytes: opts.storeMaxMiB * 1024 * 1024,
    ...(opts.storeMaxAgeS ? { maxAgeMs: opts.storeMaxAgeS * 1000 } : {}),
  });
  const engine = new WorkerEngine(opts.node, VERSION, store, new SnapshotStore(path.join(opts.dataDir, 'snapshots')), opts.flowOptions, opts.maxEntries, l7);
  if (clusterMaps.length) engine.kube = loadMaps(clusterMaps);
  else if (opts.kubeWatch) {
    try {
      const src = kubeWatchSource({ ...opts.kubeWatch });
      engine.kube = src;
      src.watcher.onNotice((n) => {
        if (n.type === 'FAILED') process.stderr.write(`kubeshark-worker: kube watch ${n.resource}: ${n.error.message} (retry in ${n.retryInMs} ms)\n`);
        // Pods coming and going change the targeting filter: rebuild it now, not at the next periodic check.
        else if (n.resource === 'pods' && n.type !== 'BOOKMARK') engine.retargetSoon();
      });
      process.stdout.write(`kubeshark-worker: watching Kubernetes at ${src.status().detail}\n`);
    } catch (err) {
      if (err instanceof KubeWatchError) throw new InputError(`--kube-watch: ${err.message}`);
      throw err;
    }
  }
  const server = await startWorkerServer(engine, host, port);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`kubeshark-worker: ${signal}, shutting down\n`);
    void Promise.all([engine.close(), server.close()]).then(() => process.exit(0));
  };
  engine.configureCaptures({ interface: opts.interface ?? 'any', tcpdumpPath: opts.tcpdump, snaplen: opts.snaplen, bufferKiB: opts.bufferKiB, excludeTcpPorts: [server.port] });
  if (opts.interface) {
    try {
      const liveOptions = {
        ...DEFAULT_LIVE_OPTIONS,
        interface: opts.interface,
        snaplen: opts.snaplen,
        bufferKiB: opts.bufferKiB,
        tcpdumpPath: opts.tcpdump,
        excludeTcpPorts: [server.port],
        ...(opts.bpf ? { bpf: opts.bpf } : {}),
      };
      const live = opts.targeting ? await engine.startTargetedLive(liveOptions, opts.targeting) : await engine.startLive(liveOptions);
      const st = live.status();
      process.stdout.write(`kubeshark-worker: capturing on ${opts.interface} (${st.listening ?? 'tcpdump started'}), filter: ${st.filter || '(none)'}\n`);
      const t = engine.targetingStatus();
      if (t) process.stdout.write(`kubeshark-worker: targeting ${t.pods} pods (${t.podIps} addresses, ${t.scope} scope, ${t.mode})${t.warning ? `: ${t.warning}` : ''}\n`);
    } catch (err) {
      await server.close();
      if (err instanceof LiveCaptureError || err instanceof QueryError) throw new InputError(err.message);
      throw new InputError(`live capture on ${opts.interface} did not start: ${(err as Error).message}`);
    }
  }
  // The address line is parsed by scripts/start.mjs and tests: keep its shape.
  process.stdout.write(`kubeshark-worker ${VERSION} node=${engine.node} listening on ${server.address}\n`);
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  if (files.length === 0) return;
  const t0 = Date.now();
  await engine.replay(files, (file, message) => process.stderr.write(`kubeshark-worker: ${file}: ${message}\n`));
  const s = engine.stats();
  process.stdout.write(
    `kubeshark-worker: replayed ${files.length} capture(s) in ${Date.now() - t0} ms: ${s.packets} packets, ${engine.tracker.flows.size} flows` +
      (s.errors.length ? `, decode errors: ${s.errors.map((e) => `${e.reason}=${e.count}`).join(' ')}` : '') +
      '\n',
  );
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === '--version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const defaultNode = process.env.NODE_NAME || hostname();
  try {
    if (command === 'analyze') {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          flows: { type: 'boolean', default: false },
          summary: { type: 'boolean', default: false },
          entries: { type: 'boolean', default: false },
          node: { type: 'string', default: defaultNode },
          'cluster-map': { type: 'string', multiple: true, default: [] },
          'grpc-descriptor-set': { type: 'string' },
        },
      });
      return await analyze(positionals, {
        flows: values.flows!,
        summary: values.summary!,
        entries: values.entries!,
        node: values.node!,
        clusterMaps: values['cluster-map']!,
        ...(values['grpc-descriptor-set'] !== undefined ? { grpcDescriptorSet: values['grpc-descriptor-set'] } : {}),
      });
    }
    if (command === 'serve') {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          capture: { type: 'string', multiple: true, default: [] },
          listen: { type: 'string', default: process.env.WORKER_LISTEN || DEFAULT_LISTEN },
          node: { type: 'string', default: defaultNode },
          interface: { type: 'string' },
          bpf: { type: 'string' },
          snaplen: { type: 'string' },
          'buffer-kib': { type: 'string' },
          tcpdump: { type: 'string', default: process.env.TCPDUMP || DEFAULT_LIVE_OPTIONS.tcpdumpPath },
          'data-dir': { type: 'string' },
          'store-max-mib': { type: 'string' },
          'store-max-age': { type: 'string' },
          'max-flows': { type: 'string' },
          'flow-max-age': { type: 'string' },
          'udp-idle-timeout': { type: 'string' },
          'max-entries': { type: 'string' },
          'body-max-kib': { type: 'string' },
          'port-map': { type: 'string' },
          'grpc-descriptor-set': { type: 'string' },
          'cluster-map': { type: 'string', multiple: true, default: [] },
          'kube-watch': { type: 'boolean', default: false },
          'kube-api': { type: 'string' },
          'kube-token-file': { type: 'string' },
          'target-namespaces': { type: 'string' },
          'exclude-namespaces': { type: 'string' },
          'target-pod-regex': { type: 'string' },
        },
      });
      const clusterMaps = values['cluster-map']!;
      const watching = values['kube-watch']! || values['kube-api'] !== undefined;
      if (watching && clusterMaps.length) throw new UsageError('give --cluster-map or --kube-watch, not both');
      if (values['kube-token-file'] !== undefined && !watching) throw new UsageError('--kube-token-file applies to --kube-watch');
      const udpIdle = values['udp-idle-timeout'];
      if (udpIdle !== undefined && !/^\d+$/.test(udpIdle)) throw new UsageError(`--udp-idle-timeout must be a whole number of seconds (got "${udpIdle}")`);
      if (values.bpf !== undefined && !values.interface) throw new UsageError('--bpf applies to live capture: add --interface IFACE');
      const list = (v: string | undefined): string[] => (v ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
      const targetingGiven = values['target-namespaces'] !== undefined || values['exclude-namespaces'] !== undefined || values['target-pod-regex'] !== undefined;
      if (targetingGiven && !values.interface) throw new UsageError('--target-namespaces, --exclude-namespaces and --target-pod-regex apply to live capture: add --interface IFACE');
      if (targetingGiven && !clusterMaps.length && !watching) throw new UsageError('targeting pods needs a Kubernetes source to find their addresses: add --cluster-map FILE or --kube-watch');
      if (values['target-pod-regex'] !== undefined) {
        try {
          new RegExp(values['target-pod-regex']);
        } catch (err) {
          throw new UsageError(`--target-pod-regex is not a valid regular expression: ${(err as Error).message}`);
        }
      }
      await serve({
        captures: [...values.capture!, ...positionals],
        listen: values.listen!,
        node: values.node!,
        snaplen: positiveInt('--snaplen', values.snaplen, DEFAULT_LIVE_OPTIONS.snaplen),
        bufferKiB: positiveInt('--buffer-kib', values['buffer-kib'], DEFAULT_LIVE_OPTIONS.bufferKiB),
        tcpdump: values.tcpdump!,
        dataDir: values['data-dir'] || process.env.WORKER_DATA_DIR || path.join(tmpdir(), `kubeshark-worker-${values.node!.replace(/[^A-Za-z0-9._-]/g, '_')}`),
        storeMaxMiB: positiveInt('--store-max-mib', values['store-max-mib'], 1024),
        maxEntries: positiveInt('--max-entries', values['max-entries'], 100_000),
        l7: {
          maxBodySize: positiveInt('--body-max-kib', values['body-max-kib'], 4) * 1024,
          ...(values['port-map'] !== undefined ? { portMapping: parsePortMap(values['port-map']) } : {}),
          ...(values['grpc-descriptor-set'] !== undefined ? { grpcDecoder: loadGrpcDescriptorSet(values['grpc-descriptor-set']) } : {}),
        },
        flowOptions: {
          maxFlows: positiveInt('--max-flows', values['max-flows'], 200_000),
          // Live traffic needs the timeout; replays default to tshark's conversation numbering.
          udpIdleTimeoutSec: udpIdle === undefined ? (values.interface ? 120 : 0) : Number(udpIdle),
          ...(values['flow-max-age'] ? { flowMaxAgeSec: positiveInt('--flow-max-age', values['flow-max-age'], 0) } : {}),
        },
        ...(values['store-max-age'] ? { storeMaxAgeS: positiveInt('--store-max-age', values['store-max-age'], 0) } : {}),
        ...(values.interface ? { interface: values.interface } : {}),
        ...(values.bpf ? { bpf: values.bpf } : {}),
        clusterMaps,
        ...(targetingGiven
          ? {
              targeting: {
                namespaces: list(values['target-namespaces']),
                excludeNamespaces: list(values['exclude-namespaces']),
                ...(values['target-pod-regex'] ? { podRegex: values['target-pod-regex'] } : {}),
                ...(process.env.WORKER_TARGET_INTERVAL_MS ? { intervalMs: positiveInt('WORKER_TARGET_INTERVAL_MS', process.env.WORKER_TARGET_INTERVAL_MS, 5000) } : {}),
              },
            }
          : {}),
        ...(watching
          ? { kubeWatch: { ...(values['kube-api'] !== undefined ? { baseUrl: values['kube-api'] } : {}), ...(values['kube-token-file'] !== undefined ? { tokenFile: values['kube-token-file'] } : {}) } }
          : {}),
      });
      return -1; // keeps running
    }
    throw new UsageError(`unknown command "${command}" (expected serve or analyze)`);
  } catch (err) {
    const parseError = (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ?? false;
    if (err instanceof UsageError || parseError) {
      process.stderr.write(`kubeshark-worker: ${(err as Error).message}\nRun "kubeshark-worker --help" for usage.\n`);
      return 2;
    }
    if (err instanceof InputError) {
      process.stderr.write(`kubeshark-worker: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`kubeshark-worker: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
