import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import path from 'node:path';

/**
 * Fixture captures (fixtures/captures, third-party, see ATTRIBUTION.md) and tshark's view of
 * them (fixtures/golden, written by scripts/golden.sh). Tests compare against these files; they
 * never run tshark.
 */

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CAPTURES_DIR = path.join(REPO_ROOT, 'fixtures', 'captures');
export const GOLDEN_DIR = path.join(REPO_ROOT, 'fixtures', 'golden');

/** Absolute path of a fixture capture, e.g. `capturePath('zeek/http_get.pcap')`. */
export function capturePath(name: string): string {
  return path.join(CAPTURES_DIR, name);
}

/** One conversation as tshark reports it: `a` is the sender of its first packet. */
export interface GoldenStream {
  stream: number;
  a: string;
  b: string;
  abFrames: number;
  abBytes: number;
  abPayload: number;
  baFrames: number;
  baBytes: number;
  baPayload: number;
  /** Seconds since the epoch, 9 decimals, as tshark prints frame.time_epoch. */
  firstTs: string;
  lastTs: string;
}

export interface GoldenHandshake {
  stream: number;
  /** The last pure SYN and the first SYN-ACK of the stream (empty when absent). */
  synTs: string;
  synAckTs: string;
  /** tcp.analysis.initial_rtt in seconds. */
  irttS: string;
}

export interface Golden {
  capture: string;
  frames: number;
  tcp: GoldenStream[];
  udp: GoldenStream[];
  handshakes: GoldenHandshake[];
}

function csv(file: string): string[][] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((l) => l.split(','));
}

function streams(file: string): GoldenStream[] {
  return csv(file).map((c) => ({
    stream: Number(c[0]),
    a: c[1]!,
    b: c[2]!,
    abFrames: Number(c[3]),
    abBytes: Number(c[4]),
    abPayload: Number(c[5]),
    baFrames: Number(c[6]),
    baBytes: Number(c[7]),
    baPayload: Number(c[8]),
    firstTs: c[9]!,
    lastTs: c[10]!,
  }));
}

/** tshark's view of a fixture capture. */
export function loadGolden(capture: string): Golden {
  const dir = path.join(GOLDEN_DIR, capture);
  return {
    capture,
    frames: Number(readFileSync(path.join(dir, 'frames.txt'), 'utf8').trim()),
    tcp: streams(path.join(dir, 'tcp_streams.csv')),
    udp: streams(path.join(dir, 'udp_streams.csv')),
    handshakes: csv(path.join(dir, 'handshakes.csv')).map((c) => ({ stream: Number(c[0]), synTs: c[1] ?? '', synAckTs: c[2] ?? '', irttS: c[3] ?? '' })),
  };
}

/** Every capture that has golden files, relative to fixtures/captures. */
export function goldenCaptures(): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const dir = path.join(GOLDEN_DIR, rel);
    for (const name of readdirSync(dir).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      if (!statSync(path.join(GOLDEN_DIR, child)).isDirectory()) continue;
      if (readdirSync(path.join(GOLDEN_DIR, child)).includes('frames.txt')) out.push(child);
      else walk(child);
    }
  };
  walk('');
  return out;
}

/**
 * tshark's view of each gopacket pcapng conformance file: records read, how many of them are
 * packets (custom blocks appear as interface-less records), and its error for a broken file.
 */
export function loadPcapngConformance(): { file: string; frames: number; packets: number; error: string }[] {
  return readFileSync(path.join(GOLDEN_DIR, 'gopacket-pcapng.tsv'), 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [file, frames, packets, error] = l.split('\t');
      return { file: file!, frames: Number(frames), packets: Number(packets), error: (error ?? '').trim() };
    });
}

/** Parses tshark's "1362692526.939344000" into integer seconds and nanoseconds. */
export function parseEpoch(ts: string): { sec: number; nsec: number } {
  const [s, frac = ''] = ts.split('.');
  return { sec: Number(s), nsec: Number(frac.padEnd(9, '0').slice(0, 9)) };
}

/** Seconds with 9 decimals, tshark style. */
export function formatEpoch(t: { sec: number; nsec: number }): string {
  return `${t.sec}.${String(t.nsec).padStart(9, '0')}`;
}

/** One frame as tshark read it from a capture (fixtures/golden/<capture>/frames.tsv). */
export interface GoldenFrame {
  frame: number;
  /** tshark's frame.time_epoch: seconds with 9 decimals. */
  timeEpoch: string;
  len: number;
  capLen: number;
  /** MD5 of the captured bytes. */
  md5: string;
  tcpStream?: number;
  udpStream?: number;
}

/** tshark's per-frame view of a capture, written by scripts/golden-frames.sh. */
export function loadFrames(capture: string): GoldenFrame[] {
  return readFileSync(path.join(GOLDEN_DIR, capture, 'frames.tsv'), 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [frame, timeEpoch, len, capLen, md5, tcp, udp] = l.split('\t');
      return {
        frame: Number(frame),
        timeEpoch: timeEpoch!,
        len: Number(len),
        capLen: Number(capLen),
        md5: md5!,
        ...(tcp ? { tcpStream: Number(tcp) } : {}),
        ...(udp ? { udpStream: Number(udp) } : {}),
      };
    });
}

/** The tcp.analysis flags counted in tcp_health.csv, as tshark names them. */
export const TCP_HEALTH_FLAGS = [
  'retransmission',
  'fast_retransmission',
  'spurious_retransmission',
  'out_of_order',
  'duplicate_ack',
  'zero_window',
  'keep_alive',
  'window_full',
  'lost_segment',
  'ack_lost_segment',
] as const;

export type TcpHealthFlag = (typeof TCP_HEALTH_FLAGS)[number];

/** Frames of one TCP stream carrying each tcp.analysis flag, per direction (`a` sent first). */
export interface GoldenTcpHealth {
  stream: number;
  a: string;
  b: string;
  ab: Record<TcpHealthFlag, number>;
  ba: Record<TcpHealthFlag, number>;
}

/**
 * tshark's expert analysis of a capture's TCP streams (tcp_health.csv), or undefined when the
 * capture has no such golden file. Columns are found by name, so their order may change.
 */
export function loadTcpHealth(capture: string): GoldenTcpHealth[] | undefined {
  const file = path.join(GOLDEN_DIR, capture, 'tcp_health.csv');
  if (!existsSync(file)) return undefined;
  const header = readFileSync(file, 'utf8').split('\n', 1)[0]!.split(',');
  const column = (name: string): number => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`${file}: no column ${name}`);
    return i;
  };
  const counts = (row: string[], dir: 'ab' | 'ba'): Record<TcpHealthFlag, number> => {
    const out = {} as Record<TcpHealthFlag, number>;
    for (const flag of TCP_HEALTH_FLAGS) out[flag] = Number(row[column(`${dir}_${flag}`)]);
    return out;
  };
  return csv(file).map((c) => ({ stream: Number(c[column('stream')]), a: c[column('a')]!, b: c[column('b')]!, ab: counts(c, 'ab'), ba: counts(c, 'ba') }));
}

/** tshark's tcp.completeness per TCP stream (tcp_completeness.csv), by stream number. */
export function loadTcpCompleteness(capture: string): Map<number, number> {
  const file = path.join(GOLDEN_DIR, capture, 'tcp_completeness.csv');
  return new Map(
    readFileSync(file, 'utf8')
      .split('\n')
      .slice(1)
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const [stream, value] = l.split(',');
        return [Number(stream), Number(value)] as [number, number];
      }),
  );
}

/**
 * Polls `fn` until it returns something other than undefined (errors count as "not yet"), or
 * fails after `ms` naming what it waited for. For conditions that settle asynchronously:
 * a worker finishing its replay, a restarted process accepting calls.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 10_000, everyMs = 50): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await Promise.resolve()
      .then(fn)
      .catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Calls a unary gRPC method by name with a deadline; rejects with the ServiceError. */
export function grpcUnary<Res>(client: object, method: string, req: object, timeoutMs = 10_000): Promise<Res> {
  type Unary = (r: object, o: { deadline: number }, cb: (e: Error | null, r: Res) => void) => void;
  const fn = (client as Record<string, Unary>)[method];
  if (!fn) return Promise.reject(new Error(`no method ${method}`));
  return new Promise((resolve, reject) => {
    fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** What `rawHttp` got back. */
export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One HTTP request to 127.0.0.1 with exactly the headers given. node:http, not fetch: fetch
 * (undici) sets Host itself and does not let the caller choose it, and a DNS-rebinding attack is
 * precisely a foreign Host arriving at a local socket.
 */
export function rawHttp(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The worker's command line, built (apps/worker/dist/cli.js). */
export const WORKER_CLI = path.join(REPO_ROOT, 'apps', 'worker', 'dist', 'cli.js');

/** A worker process started by `startWorkerProcess`. */
export interface WorkerProcess {
  proc: ChildProcess;
  /** host:port its gRPC server listens on. */
  address: string;
  /** Everything it printed so far, stdout and stderr. */
  output: () => string;
}

/**
 * Runs `worker serve` with `args` and resolves once it says where it listens. Rejects with what
 * it printed when it exits first or does not listen within `timeoutMs`.
 */
export function startWorkerProcess(args: readonly string[], timeoutMs = 10_000): Promise<WorkerProcess> {
  const proc = spawn(process.execPath, [WORKER_CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`worker did not start within ${timeoutMs} ms: ${out}`));
    }, timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = / listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, address: m[1]!, output: () => out });
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}: ${out}`));
    });
  });
}

/**
 * Whether live capture can run here: tcpdump installed and running as root. When not, prints
 * that `what` is skipped and why; in CI (CI set) it throws instead, since .ci/run installs
 * tcpdump and runs as root and a silently skipped suite would hide a broken setup.
 */
export function canCaptureLive(what: string): boolean {
  const tcpdumpOk = spawnSync('tcpdump', ['--version']).status === 0;
  const ok = tcpdumpOk && process.getuid?.() === 0;
  if (!ok) {
    if (process.env.CI) throw new Error(`${what} need tcpdump and root in CI: see .ci/run`);
    console.warn(`${what} skipped: ${tcpdumpOk ? 'not running as root' : 'tcpdump is not installed'}`);
  }
  return ok;
}

/** A seeded PRNG (mulberry32) giving numbers in [0, 1): the same "random" inputs on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
