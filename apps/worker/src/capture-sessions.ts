import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { FlowTracker, pcapngInterface, pcapngPacketSize, pcapngSectionHeader, selectFlows, type RawPacket } from '@kubeshark-mcp/capture';
import type { Flow } from '@kubeshark-mcp/mcp-core/model';
import { CaptureFileBuilder, exportPackets } from './export';
import { LiveCapture, LiveCaptureError, hostFilter, type LiveCaptureOptions } from './live';
import { flowToModel } from './model';
import { SnapshotStore } from './snapshots';

/**
 * Targeted captures: bounded capture sessions, each with its own tcpdump, next to the worker's
 * continuous capture. A session captures the pods a request names (namespaces and a pod-name
 * regex, resolved to their addresses on this node when it starts) and/or a BPF filter, until its
 * duration or byte budget runs out, it is stopped, or tcpdump fails. Its packets go into a pcapng
 * file; when it ends they become a snapshot named by the capture id, with the flows they form,
 * so export_pcap, get_snapshot and delete_snapshot work on them as on any snapshot.
 */

/** How sessions run tcpdump: the worker's interface (or `any`) and capture settings. */
export type CaptureDefaults = Pick<LiveCaptureOptions, 'interface' | 'tcpdumpPath' | 'snaplen' | 'bufferKiB' | 'excludeTcpPorts'>;

export interface CaptureRequest {
  /** Empty: one is made ("cap-<time>-<random>"). */
  id?: string;
  bpf?: string;
  namespaces?: string[];
  podRegex?: string;
  /** Seconds; default 30, at most 3600. */
  durationS?: number;
  /** Capture file bytes; default 100 MiB. */
  maxBytes?: number;
}

export type CaptureState = 'running' | 'done' | 'stopped' | 'limit' | 'failed';

export interface CaptureInfo {
  id: string;
  node: string;
  state: CaptureState;
  packets: number;
  /** Capture file bytes (pcapng). */
  bytes: number;
  startedAtUs: number;
  /** 0 while running. */
  endedAtUs: number;
  error?: string;
  filter: string;
  interface: string;
  durationS: number;
  maxBytes: number;
  podIps: number;
  note?: string;
  /** The snapshot holding the packets, once the capture ended (not when it failed to start). */
  snapshot?: string;
}

export class CaptureError extends Error {
  override readonly name = 'CaptureError';
  constructor(
    readonly code: 'invalid' | 'exists' | 'not-found' | 'precondition' | 'exhausted',
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The pods a request targets, as addresses; `scope` says whether only this node's pods count. */
export interface TargetPods {
  pods: number;
  ips: string[];
  scope: 'node' | 'cluster';
}

export interface CaptureSessionsOptions {
  node: string;
  /** Where running captures write (files left by an earlier run are removed). */
  dir: string;
  snapshots: SnapshotStore;
  defaults: CaptureDefaults;
  /** Pods of these namespaces whose names match; undefined when the worker has no Kubernetes source. */
  targets: (namespaces: readonly string[], podRegex: RegExp | undefined) => TargetPods | undefined;
  /** Also hands each captured packet to the worker's pipeline (flows, API calls, packet store). */
  feed?: (p: RawPacket) => void;
  /** Sessions running at once (default 4). */
  maxRunning?: number;
  /** Finished sessions remembered for ListCaptures (default 100). */
  keep?: number;
}

export const DEFAULT_CAPTURE_DURATION_S = 30;
export const MAX_CAPTURE_DURATION_S = 3600;
export const DEFAULT_CAPTURE_MAX_BYTES = 100 * 1024 * 1024;
const APPLICATION = 'kubeshark-mcp export';

class Session {
  readonly info: CaptureInfo;
  live?: LiveCapture;
  private fd: number | undefined;
  private builder: CaptureFileBuilder | undefined;
  private readonly linkTypes = new Set<number>();
  private readonly tracker = new FlowTracker({});
  private timer: NodeJS.Timeout | undefined;
  private ending: Promise<void> | undefined;
  readonly file: string;

  constructor(
    private readonly owner: CaptureSessionsOptions,
    info: CaptureInfo,
  ) {
    this.info = info;
    this.file = path.join(owner.dir, `${info.id}.pcapng`);
  }

  async start(bpf: string | undefined): Promise<void> {
    const fd = openSync(this.file, 'w');
    this.fd = fd;
    this.builder = new CaptureFileBuilder('pcapng', (chunk) => {
      let off = 0;
      while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
    });
    this.live = new LiveCapture(
      {
        ...this.owner.defaults,
        ...(bpf ? { bpf } : {}),
        statsIntervalMs: 1000,
        restartMinMs: 500,
        restartMaxMs: 500,
        restart: false,
        onExit: (reason) => void this.end('failed', reason),
      },
      (p) => this.onPacket(p),
    );
    this.info.filter = this.live.filter;
    try {
      await this.live.start();
    } catch (err) {
      this.closeFile();
      rmSync(this.file, { force: true });
      throw err;
    }
    this.timer = setTimeout(() => void this.end('done'), this.info.durationS * 1000);
    this.timer.unref();
  }

  private onPacket(p: RawPacket): void {
    if (this.ending || !this.builder) return;
    let size = pcapngPacketSize(p.capLen);
    if (this.info.packets === 0 && this.linkTypes.size === 0) size += pcapngSectionHeader(APPLICATION).length;
    const newLink = !this.linkTypes.has(p.linkType);
    if (newLink) size += pcapngInterface(p.linkType).length;
    if (this.info.bytes + size > this.info.maxBytes) {
      void this.end('limit');
      return;
    }
    if (newLink) this.linkTypes.add(p.linkType);
    this.builder.add(p);
    this.tracker.onPacket(p);
    this.info.packets++;
    this.info.bytes += size;
    this.owner.feed?.(p);
  }

  /** Ends the session once (later calls wait for the first): stops tcpdump, keeps the packets as a snapshot. */
  end(state: Exclude<CaptureState, 'running'>, error?: string): Promise<void> {
    this.ending ??= this.finish(state, error);
    return this.ending;
  }

  /** The session reads as running until its snapshot exists, so a finished capture can always be exported. */
  private async finish(state: Exclude<CaptureState, 'running'>, error?: string): Promise<void> {
    clearTimeout(this.timer);
    const endedAtUs = Date.now() * 1000;
    await this.live?.stop();
    let final: Pick<CaptureInfo, 'state' | 'error' | 'snapshot' | 'bytes' | 'packets'> = { state, ...(error ? { error } : {}), bytes: this.info.bytes, packets: this.info.packets };
    try {
      this.builder?.finish();
      this.closeFile();
      const flows: Flow[] = selectFlows(this.tracker.flows, {}).map((f) => flowToModel(f, this.owner.node));
      const snap = await this.owner.snapshots.create(this.info.id, this.info.startedAtUs, endedAtUs, (write) => exportPackets([this.file], {}, 'pcapng', write), flows);
      final = { ...final, snapshot: snap.name, bytes: snap.bytes, packets: snap.packets };
    } catch (err) {
      final = { ...final, state: 'failed', error: `${error ? `${error}; ` : ''}the captured packets could not be kept: ${(err as Error).message}` };
    } finally {
      rmSync(this.file, { force: true });
    }
    Object.assign(this.info, final, { endedAtUs });
  }

  private closeFile(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Every targeted capture of a worker: the running ones and the recently finished. */
export class CaptureSessions {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly options: CaptureSessionsOptions) {
    mkdirSync(options.dir, { recursive: true });
    for (const name of readdirSync(options.dir)) if (name.endsWith('.pcapng')) rmSync(path.join(options.dir, name), { force: true });
  }

  /** Starts a capture; resolves once tcpdump listens (or at once, when no pod on this node is targeted). */
  async start(req: CaptureRequest): Promise<CaptureInfo> {
    const id = req.id?.trim() || newCaptureId();
    try {
      SnapshotStore.validateName(id);
    } catch (err) {
      throw new CaptureError('invalid', (err as Error).message.replace(/^snapshot name/, 'capture id'), 'id');
    }
    if (this.sessions.has(id)) throw new CaptureError('exists', `capture "${id}" already exists`, 'id');
    if (this.options.snapshots.list().some((s) => s.name === id)) throw new CaptureError('exists', `a snapshot named "${id}" already exists; captures are kept as snapshots named by their id`, 'id');
    const durationS = req.durationS || DEFAULT_CAPTURE_DURATION_S;
    if (durationS > MAX_CAPTURE_DURATION_S) throw new CaptureError('invalid', `duration_s must be at most ${MAX_CAPTURE_DURATION_S} (got ${durationS})`, 'duration_s');
    const maxBytes = req.maxBytes || DEFAULT_CAPTURE_MAX_BYTES;
    if (maxBytes < 1024) throw new CaptureError('invalid', `max_bytes must be at least 1024 (got ${maxBytes})`, 'max_bytes');
    const running = [...this.sessions.values()].filter((s) => s.info.state === 'running').length;
    if (running >= (this.options.maxRunning ?? 4)) throw new CaptureError('exhausted', `${running} captures are running already; stop one or wait for it to end`);
    const namespaces = (req.namespaces ?? []).map((n) => n.trim()).filter((n) => n !== '');
    let regex: RegExp | undefined;
    if (req.podRegex) {
      try {
        regex = new RegExp(req.podRegex);
      } catch (err) {
        throw new CaptureError('invalid', `pod_regex is not a valid regular expression: ${(err as Error).message}`, 'pod_regex');
      }
    }
    const targeted = namespaces.length > 0 || regex !== undefined;
    let target: TargetPods | undefined;
    if (targeted) {
      target = this.options.targets(namespaces, regex);
      if (!target) throw new CaptureError('precondition', 'namespaces and pod_regex need a Kubernetes source on the worker (--cluster-map or --kube-watch); capture by bpf instead');
    }
    const now = Date.now() * 1000;
    const info: CaptureInfo = {
      id,
      node: this.options.node,
      state: 'running',
      packets: 0,
      bytes: 0,
      startedAtUs: now,
      endedAtUs: 0,
      filter: '',
      interface: this.options.defaults.interface,
      durationS,
      maxBytes,
      podIps: target?.ips.length ?? 0,
    };
    const session = new Session(this.options, info);
    if (target && target.ips.length === 0) {
      // Nothing on this node to capture: say so instead of running tcpdump on a filter that takes nothing.
      info.state = 'done';
      info.endedAtUs = now;
      info.note = `no pod${namespaces.length ? ` in ${namespaces.join(', ')}` : ''}${regex ? ` matching /${regex.source}/` : ''} ${target.scope === 'node' ? `runs on node ${this.options.node}` : 'is known'}`;
      this.remember(session);
      return { ...info };
    }
    const parts = [target ? hostFilter(target.ips).expr : '', req.bpf?.trim() ?? ''].filter((p) => p !== '');
    try {
      await session.start(parts.length > 1 ? parts.map((p) => `(${p})`).join(' and ') : parts[0]);
    } catch (err) {
      if (err instanceof LiveCaptureError && /capture filter is invalid/.test(err.message)) throw new CaptureError('invalid', err.message, 'bpf');
      if (err instanceof LiveCaptureError) throw new CaptureError('precondition', err.message);
      throw err;
    }
    this.remember(session);
    return { ...info };
  }

  async stop(id: string): Promise<CaptureInfo> {
    const s = this.sessions.get(id);
    if (!s) throw new CaptureError('not-found', `no capture "${id}" on node ${this.options.node}`, 'id');
    if (s.info.state === 'running') await s.end('stopped');
    return { ...s.info };
  }

  list(): CaptureInfo[] {
    return [...this.sessions.values()].map((s) => ({ ...s.info }));
  }

  get(id: string): CaptureInfo | undefined {
    const s = this.sessions.get(id);
    return s ? { ...s.info } : undefined;
  }

  /** Stops every running capture (their packets are kept). */
  async close(): Promise<void> {
    await Promise.all([...this.sessions.values()].filter((s) => s.info.state === 'running').map((s) => s.end('stopped', 'the worker shut down')));
  }

  private remember(s: Session): void {
    this.sessions.set(s.info.id, s);
    const keep = this.options.keep ?? 100;
    for (const [id, old] of this.sessions) {
      if (this.sessions.size <= keep) break;
      if (old.info.state !== 'running') this.sessions.delete(id);
    }
  }
}

/** "cap-20240501T141500Z-a1b2c3": sortable by time, unique enough to share across nodes. */
export function newCaptureId(now = Date.now()): string {
  return `cap-${new Date(now).toISOString().replace(/\.\d+/, '').replace(/[-:]/g, '')}-${randomBytes(3).toString('hex')}`;
}
