import { spawn, type ChildProcess } from 'node:child_process';
import { readCaptureStream, type RawPacket } from '@kubeshark-mcp/capture';

/**
 * Live capture through a `tcpdump -w -` child process: no native addon, and the kernel-side
 * filtering, buffering and drop accounting of libpcap. tcpdump prints its counters on SIGUSR1
 * (and on exit); we ask for them periodically. If tcpdump dies it is restarted with backoff and
 * the time without capture is recorded as a gap. Configuration errors (no tcpdump, no
 * permission, a bad filter, no such interface) stop the capture with a message saying how to
 * fix them, instead of restarting forever.
 */

export interface LiveCaptureOptions {
  /** Interface name; `any` captures all (as Linux cooked v2). */
  interface: string;
  /** User BPF filter, AND-ed with the exclusion of the worker's own traffic. */
  bpf?: string;
  /** Bytes kept per packet (tcpdump -s). */
  snaplen: number;
  /** Kernel buffer in KiB (tcpdump -B). */
  bufferKiB: number;
  /** TCP ports never captured: the worker's own gRPC port, so it does not capture itself. */
  excludeTcpPorts: number[];
  /** tcpdump binary. */
  tcpdumpPath: string;
  /** How often to ask tcpdump for its counters (SIGUSR1), ms. */
  statsIntervalMs: number;
  /** Restart backoff, ms. */
  restartMinMs: number;
  restartMaxMs: number;
  /**
   * Restart tcpdump when it dies (default). Bounded captures turn it off: a capture that lost
   * tcpdump ends as failed, and `onExit` says why.
   */
  restart?: boolean;
  /** Called once when tcpdump ended by itself (not through `stop`) and will not be restarted. */
  onExit?: (reason: string) => void;
}

export const DEFAULT_LIVE_OPTIONS: Omit<LiveCaptureOptions, 'interface'> = {
  snaplen: 262144,
  bufferKiB: 8192,
  excludeTcpPorts: [],
  tcpdumpPath: 'tcpdump',
  statsIntervalMs: 5000,
  restartMinMs: 500,
  restartMaxMs: 30_000,
};

export type LiveState = 'starting' | 'capturing' | 'restarting' | 'failed' | 'stopped';

export interface CaptureGap {
  fromUs: number;
  toUs: number;
  reason: string;
}

export interface LiveStatus {
  interface: string;
  filter: string;
  state: LiveState;
  error?: string;
  packets: number;
  bytes: number;
  /** libpcap's counters from tcpdump, summed over restarts. */
  receivedByFilter: number;
  kernelDrops: number;
  restarts: number;
  gaps: CaptureGap[];
  /** tcpdump's own line about the link type and snap length, once it has started. */
  listening?: string;
}

/** The BPF expression actually given to tcpdump. */
export function buildFilter(bpf: string | undefined, excludeTcpPorts: number[]): string {
  const parts: string[] = [];
  if (bpf && bpf.trim()) parts.push(`(${bpf.trim()})`);
  for (const p of excludeTcpPorts) parts.push(`not (tcp port ${p})`);
  return parts.join(' and ');
}

/** Host terms a targeting filter holds before it aggregates addresses into networks (BPF programs are limited in size). */
export const MAX_FILTER_TERMS = 256;

/** A filter that takes no packet: what "capture these pods" means when there are none. */
export const NOTHING_FILTER = 'less 1';

export interface HostFilter {
  /** hosts: one term per address; nets: /24 (IPv4) and /64 (IPv6) networks; none: no address; all: too many networks, no restriction. */
  mode: 'hosts' | 'nets' | 'none' | 'all';
  /** The BPF expression ('' for all). */
  expr: string;
  warning?: string;
}

/** The eight 16-bit groups of an IPv6 address, as numbers. */
function ipv6Groups(ip: string): number[] {
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(tail === undefined ? 0 : 8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => parseInt(g, 16) || 0);
}

/** The network an address is aggregated into when there are too many: its /24 or /64. */
function networkOf(ip: string): string {
  if (!ip.includes(':')) return `${ip.split('.').slice(0, 3).join('.')}.0/24`;
  return `${ipv6Groups(ip)
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/**
 * A BPF expression taking the packets to or from any of `ips`. Up to `maxTerms` addresses get a
 * host term each; more are aggregated into /24 (/64) networks, which may take in neighbours; more
 * networks than that and the restriction is dropped (with a warning) rather than failing capture.
 */
export function hostFilter(ips: readonly string[], maxTerms = MAX_FILTER_TERMS): HostFilter {
  const unique = [...new Set(ips)].sort();
  if (unique.length === 0) return { mode: 'none', expr: NOTHING_FILTER };
  if (unique.length <= maxTerms) return { mode: 'hosts', expr: unique.map((ip) => `host ${ip}`).join(' or ') };
  const nets = [...new Set(unique.map(networkOf))].sort();
  if (nets.length <= maxTerms) {
    return {
      mode: 'nets',
      expr: nets.map((n) => `net ${n}`).join(' or '),
      warning: `${unique.length} addresses are more than ${maxTerms} filter terms: captured as ${nets.length} networks, which may include untargeted neighbours`,
    };
  }
  return { mode: 'all', expr: '', warning: `${unique.length} addresses in ${nets.length} networks are too many for a capture filter: targeting is not applied, everything is captured` };
}

/** tcpdump's complaint turned into what the user should do; undefined when it is not fatal. */
export function diagnoseTcpdump(stderr: string, o: Pick<LiveCaptureOptions, 'interface' | 'tcpdumpPath'>, filter: string): string | undefined {
  if (/permission|Operation not permitted|not permitted/i.test(stderr)) {
    return (
      `tcpdump may not capture on ${o.interface}: ${firstLine(stderr)}. Run the worker as root, or grant the capture ` +
      `capabilities: setcap cap_net_raw,cap_net_admin=eip $(command -v ${o.tcpdumpPath}) (in Kubernetes: add NET_RAW and NET_ADMIN to the worker's capabilities).`
    );
  }
  if (/syntax error|illegal token|parse error|can't parse filter|expression rejects all packets/i.test(stderr)) {
    return `the capture filter is invalid: ${firstLine(stderr)} (filter given to tcpdump: "${filter}")`;
  }
  if (/No such device|doesn't exist|no suitable device|SIOCGIFHWADDR|That device is not up/i.test(stderr)) {
    return `cannot capture on interface "${o.interface}": ${firstLine(stderr)}. List interfaces with: ${o.tcpdumpPath} -D`;
  }
  return undefined;
}

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .map((l) => l.replace(/^tcpdump: /, '').trim())
      .find((l) => l && !/^(listening on|\d+ packets?)/.test(l)) ?? s.trim()
  );
}

const COUNTERS = /(\d+) packets? captured[\s\S]*?(\d+) packets? received by filter[\s\S]*?(\d+) packets? dropped by kernel/g;

/**
 * One live capture. `start` resolves once tcpdump says it is listening (or rejects with a
 * fatal configuration error); packets then flow to `onPacket` until `stop`.
 */
export class LiveCapture {
  private child: ChildProcess | undefined;
  private stopping = false;
  private statsTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private backoff: number;
  private lastPacketUs = 0;
  private pendingGap: { fromUs: number; reason: string } | undefined;
  /** Counters of the current tcpdump run; folded into the totals when it exits. */
  private run = { received: 0, dropped: 0 };
  private readonly totals = { received: 0, dropped: 0 };
  private bpf: string | undefined;
  filter: string;
  private readonly st: Omit<LiveStatus, 'receivedByFilter' | 'kernelDrops'>;

  constructor(
    private readonly options: LiveCaptureOptions,
    private readonly onPacket: (p: RawPacket) => void,
  ) {
    this.bpf = options.bpf;
    this.filter = buildFilter(options.bpf, options.excludeTcpPorts);
    this.backoff = options.restartMinMs;
    this.st = { interface: options.interface, filter: this.filter, state: 'starting', packets: 0, bytes: 0, restarts: 0, gaps: [] };
  }

  status(): LiveStatus {
    return {
      ...this.st,
      gaps: [...this.st.gaps],
      receivedByFilter: this.totals.received + this.run.received,
      kernelDrops: this.totals.dropped + this.run.dropped,
    };
  }

  /** Starts tcpdump; resolves when it listens, rejects on a configuration error. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      this.spawnOnce((err) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /** Asks tcpdump for its counters now; they arrive on its stderr shortly after. */
  requestStats(): void {
    if (this.child?.pid && this.child.exitCode === null) this.child.kill('SIGUSR1');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.statsTimer);
    clearTimeout(this.restartTimer);
    await terminate(this.child);
    this.st.state = this.st.state === 'failed' ? 'failed' : 'stopped';
  }

  /** The user part of the filter (without the port exclusions). */
  get userBpf(): string | undefined {
    return this.bpf;
  }

  /**
   * Captures with another filter from now on: tcpdump is stopped and started again with it (the
   * kernel filter cannot be swapped in place). The moment between the two is recorded as a gap.
   * Resolves when the new tcpdump listens; rejects (and the capture fails) if it cannot start.
   */
  async setBpf(bpf: string | undefined): Promise<void> {
    const filter = buildFilter(bpf, this.options.excludeTcpPorts);
    this.bpf = bpf;
    if (filter === this.filter || this.stopping) {
      this.filter = filter;
      this.st.filter = filter;
      return;
    }
    this.filter = filter;
    this.st.filter = filter;
    if (this.st.state === 'failed') return;
    clearTimeout(this.restartTimer);
    const old = this.child;
    // The old child's exit handler sees it is no longer current and neither restarts nor fails.
    this.child = undefined;
    this.pendingGap ??= { fromUs: Date.now() * 1000, reason: 'filter changed (tcpdump restarted)' };
    await terminate(old);
    if (this.stopping) return;
    await new Promise<void>((resolve, reject) => {
      this.spawnOnce((err) => (err ? reject(err) : resolve()));
    });
  }

  private spawnOnce(onReady?: (err?: Error) => void): void {
    const o = this.options;
    const args = ['-i', o.interface, '-U', '-n', '-s', String(o.snaplen), '-B', String(o.bufferKiB), '-w', '-'];
    if (this.filter) args.push(this.filter);
    let child: ChildProcess;
    try {
      child = spawn(o.tcpdumpPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      this.fail(`cannot start ${o.tcpdumpPath}: ${(err as Error).message}`, onReady);
      return;
    }
    this.child = child;
    const run = { received: 0, dropped: 0 };
    this.run = run;
    let stderr = '';
    let listening = false;

    child.on('error', (err: NodeJS.ErrnoException) => {
      const msg =
        err.code === 'ENOENT'
          ? `tcpdump not found (${o.tcpdumpPath}): install it (Debian/Ubuntu: apt-get install tcpdump; Alpine: apk add tcpdump) or pass --tcpdump PATH`
          : `cannot run ${o.tcpdumpPath}: ${err.message}`;
      this.fail(msg, onReady);
    });

    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      if (!listening && /listening on/.test(stderr)) {
        listening = true;
        this.st.listening = /listening on[^\n]*/.exec(stderr)?.[0];
        this.st.state = 'capturing';
        this.st.error = undefined;
        this.backoff = o.restartMinMs;
        onReady?.();
      }
      // Keep only the newest counters of this run (they are cumulative per run).
      let m: RegExpExecArray | null;
      COUNTERS.lastIndex = 0;
      while ((m = COUNTERS.exec(stderr))) {
        run.received = Number(m[2]);
        run.dropped = Number(m[3]);
      }
      if (stderr.length > 64 * 1024) stderr = stderr.slice(-16 * 1024);
    });

    const reading = readCaptureStream(child.stdout!, (p) => {
      this.st.packets++;
      this.st.bytes += p.origLen;
      const us = p.tsSec * 1e6 + Math.floor(p.tsNsec / 1000);
      if (this.pendingGap) {
        this.st.gaps.push({ fromUs: this.pendingGap.fromUs, toUs: us, reason: this.pendingGap.reason });
        this.pendingGap = undefined;
      }
      this.lastPacketUs = us;
      this.onPacket(p);
    }).catch((err: unknown) => ({ error: err as Error }));

    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.requestStats(), o.statsIntervalMs);
    this.statsTimer.unref();

    child.on('close', (code, signal) => {
      const current = this.child === child;
      if (current) clearInterval(this.statsTimer);
      void reading.then((result) => {
        this.totals.received += run.received;
        this.totals.dropped += run.dropped;
        run.received = 0;
        run.dropped = 0;
        // A spawn failure (no such binary) was already reported by the 'error' handler; a child
        // replaced by setBpf ends on purpose.
        if (this.stopping || this.st.state === 'failed' || !current || this.child !== child) return;
        const fatal = diagnoseTcpdump(stderr, o, this.filter);
        if (fatal) {
          this.fail(fatal, onReady);
          return;
        }
        const streamError = 'error' in result && result.error ? `; ${result.error.message}` : '';
        const why = `tcpdump exited (${signal ?? `code ${code}`})${stderr.trim() ? `: ${firstLine(stderr)}` : ''}${streamError}`;
        if (o.restart === false) {
          this.fail(why, onReady);
          o.onExit?.(why);
          return;
        }
        if (!listening) {
          // Died before it ever listened and we could not tell why: report, but keep trying.
          onReady?.(new Error(why));
          onReady = undefined;
        }
        this.scheduleRestart(why);
      });
    });
  }

  private scheduleRestart(reason: string): void {
    this.st.state = 'restarting';
    this.st.error = reason;
    this.pendingGap ??= { fromUs: this.lastPacketUs || Date.now() * 1000, reason };
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.options.restartMaxMs);
    this.restartTimer = setTimeout(() => {
      if (this.stopping) return;
      this.st.restarts++;
      this.spawnOnce();
    }, delay);
    this.restartTimer.unref();
  }

  private fail(message: string, onReady?: (err?: Error) => void): void {
    clearInterval(this.statsTimer);
    this.st.state = 'failed';
    this.st.error = message;
    onReady?.(new LiveCaptureError(message));
  }
}

/** Ends a tcpdump child: SIGTERM (it then flushes and prints its counters), SIGKILL after 2 s. */
async function terminate(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export class LiveCaptureError extends Error {
  override readonly name = 'LiveCaptureError';
}
