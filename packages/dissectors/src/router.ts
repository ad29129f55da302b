import type { TcpChunk, TcpDirection, TcpEnd, TcpGap, TcpStreamConsumer } from '@kubeshark-mcp/capture';
import type { HttpUpgrade } from './http1';
import type { TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * Hands every TCP stream to the dissector whose protocol recognises its first bytes.
 *
 * Until a stream is claimed its events are copied and held (at most `maxDetectBytes` per
 * direction); each protocol's `detect` judges the bytes each direction sent so far, the
 * protocols whose ports (their own plus the configured `portMapping`) match the stream asked
 * first. The first `yes` claims the stream: the dissector gets `open`, then the held events in
 * their order, then everything that follows. The stream stays unclaimed (an L4 flow only) when
 * every protocol said `no` for every direction that sent bytes and both directions have sent
 * or ended, or when a direction sent `maxDetectBytes` without a `yes`; a gap before the
 * decision ends detection for its direction (what follows a hole is not a first byte).
 *
 * After an HTTP/1.1 upgrade (`upgrade`, called from the HTTP dissector's `onUpgrade`), the
 * stream moves to the dissector registered for the upgrade token (`websocket`, `h2c`), which
 * gets `open` with the upgrade and the bytes past the boundary; the HTTP dissector still gets
 * the stream's end events so it can drop its state.
 */

export interface RoutedProtocol {
  protocol: TcpProtocol;
  dissector: TcpDissector;
}

/** What the flow table knows about a stream. */
export interface StreamFacts {
  /** The client's direction, when the handshake was captured. */
  clientDir: TcpDirection | undefined;
  /** The ports of direction 0's sender and of direction 1's sender. */
  ports: readonly [number, number];
}

export interface StreamRouterOptions {
  protocols: readonly RoutedProtocol[];
  /** Looked up once per stream, at its first event. */
  facts: (stream: number) => StreamFacts;
  /** More ports per protocol name, on top of each protocol's own (Kubeshark's `portMapping`). */
  portMapping?: Readonly<Record<string, readonly number[]>>;
  /** Dissectors that take over after an HTTP/1.1 upgrade, by lower-cased `Upgrade` token. */
  upgrades?: Readonly<Record<string, TcpDissector>>;
  /** Bytes per direction judged before a stream is left unclaimed. Default 4 KiB. */
  maxDetectBytes?: number;
  /**
   * Streams whose protocol is remembered after they end by idle time, eviction or flush, so
   * that when the same stream resumes (a mid-stream join under the same id) it goes straight
   * back to that dissector: a resumed piece may carry only what detection cannot recognise
   * (Kafka responses). Oldest forgotten first. Default 65,536.
   */
  maxRemembered?: number;
}

export interface StreamRouterStats {
  /** Streams claimed, by protocol name (upgrades count under the new protocol too). */
  claimed: Record<string, number>;
  /** Streams no protocol claimed. */
  unclaimed: number;
  /** Streams waiting for a decision now, and the bytes held for them. */
  pending: number;
  pendingBytes: number;
}

type Held =
  | { kind: 'data'; dir: TcpDirection; offset: number; bytes: Uint8Array; t: [number, number, number, number]; midStream: boolean }
  | { kind: 'gap'; dir: TcpDirection; offset: number; length: number; reason: TcpGap['reason']; sec: number; nsec: number };

interface DirProbe {
  /** Contiguous first bytes of the direction (detection input). */
  bytes: Uint8Array;
  /** No more bytes will be judged: ended, hit a gap, or reached the limit. */
  final: boolean;
}

interface Pending {
  facts: StreamFacts;
  held: Held[];
  heldBytes: number;
  dirs: [DirProbe, DirProbe];
  /** The protocols in the order they are asked. */
  order: readonly RoutedProtocol[];
}

/** Where a stream's events go once decided: a dissector, or nowhere. */
interface Route {
  to: TcpDissector | null;
  /** Gets the end events too (the HTTP dissector after an upgrade). */
  also: TcpDissector | null;
  clientDir: TcpDirection | undefined;
}

const EMPTY = new Uint8Array(0);

export class StreamRouter implements TcpStreamConsumer {
  private readonly protocols: readonly RoutedProtocol[];
  private readonly ports = new Map<RoutedProtocol, Set<number>>();
  private readonly pending = new Map<number, Pending>();
  private readonly routes = new Map<number, Route>();
  private readonly maxDetect: number;
  private readonly counters: StreamRouterStats = { claimed: {}, unclaimed: 0, pending: 0, pendingBytes: 0 };
  private heldBytes = 0;
  /** Claimed streams that ended without FIN or RST, and who had them (insertion order = age). */
  private readonly remembered = new Map<number, RoutedProtocol>();
  private readonly maxRemembered: number;
  private readonly chunk: TcpChunk = { stream: 0, dir: 0, offset: 0, buf: EMPTY, start: 0, length: 0, firstSec: 0, firstNsec: 0, lastSec: 0, lastNsec: 0, midStream: false };
  private readonly gap: TcpGap = { stream: 0, dir: 0, offset: 0, length: 0, reason: 'acked', sec: 0, nsec: 0 };

  constructor(private readonly options: StreamRouterOptions) {
    this.protocols = options.protocols;
    this.maxDetect = options.maxDetectBytes ?? 4096;
    this.maxRemembered = options.maxRemembered ?? 65_536;
    for (const p of this.protocols) {
      this.ports.set(p, new Set([...p.protocol.ports, ...(options.portMapping?.[p.protocol.name] ?? [])]));
      this.counters.claimed[p.protocol.name] = 0;
    }
  }

  stats(): StreamRouterStats {
    return { ...this.counters, claimed: { ...this.counters.claimed }, pending: this.pending.size, pendingBytes: this.heldBytes };
  }

  onData(c: TcpChunk): void {
    const route = this.routes.get(c.stream) ?? this.resumed(c.stream);
    if (route) {
      route.to?.onData(c);
      return;
    }
    const p = this.pendingOf(c.stream);
    // A copy: the chunk is the caller's (valid during this call only); Buffer#slice would be a view.
    const bytes = Buffer.from(c.buf.subarray(c.start, c.start + c.length));
    p.held.push({ kind: 'data', dir: c.dir, offset: c.offset, bytes, t: [c.firstSec, c.firstNsec, c.lastSec, c.lastNsec], midStream: c.midStream });
    p.heldBytes += bytes.length;
    this.heldBytes += bytes.length;
    const d = p.dirs[c.dir];
    if (!d.final) {
      const room = this.maxDetect - d.bytes.length;
      const add = bytes.subarray(0, Math.max(0, room));
      const grown = new Uint8Array(d.bytes.length + add.length);
      grown.set(d.bytes);
      grown.set(add, d.bytes.length);
      d.bytes = grown;
      if (d.bytes.length >= this.maxDetect) d.final = true;
    }
    this.decide(c.stream, p);
  }

  onGap(g: TcpGap): void {
    const route = this.routes.get(g.stream) ?? this.resumed(g.stream);
    if (route) {
      route.to?.onGap(g);
      return;
    }
    const p = this.pendingOf(g.stream);
    p.held.push({ kind: 'gap', dir: g.dir, offset: g.offset, length: g.length, reason: g.reason, sec: g.sec, nsec: g.nsec });
    p.dirs[g.dir].final = true;
    this.decide(g.stream, p);
  }

  onEnd(e: TcpEnd): void {
    const p = this.pending.get(e.stream);
    if (p) {
      p.dirs[e.dir].final = true;
      this.decide(e.stream, p);
      // Still undecided: the bytes seen were all `more`; nothing else will come for this direction.
      if (this.pending.has(e.stream) && (e.closed || p.dirs.every((d) => d.final))) this.settle(e.stream, p, null);
    }
    const route = this.routes.get(e.stream);
    if (route) {
      route.to?.onEnd(e);
      route.also?.onEnd(e);
    }
    if (e.closed) {
      const claimed = route?.to ? this.protocols.find((p) => p.dissector === route.to) : undefined;
      this.routes.delete(e.stream);
      if (claimed && (e.reason === 'idle' || e.reason === 'evicted' || e.reason === 'flush')) {
        this.remembered.delete(e.stream);
        this.remembered.set(e.stream, claimed);
        if (this.remembered.size > this.maxRemembered) this.remembered.delete(this.remembered.keys().next().value!);
      } else {
        this.remembered.delete(e.stream);
      }
    }
  }

  /** Moves an upgraded connection to the dissector registered for its `Upgrade` token. */
  upgrade(u: HttpUpgrade): void {
    const target = this.options.upgrades?.[u.protocol];
    const route = this.routes.get(u.stream);
    if (!target || !route) return;
    const name = this.protocols.find((p) => p.dissector === target)?.protocol.name;
    if (name !== undefined) this.counters.claimed[name]!++;
    route.also = route.to;
    route.to = target;
    target.open(u.stream, {
      clientDir: route.clientDir,
      upgrade: { method: u.method, path: u.path, host: u.host, requestHeaders: u.requestHeaders, responseHeaders: u.responseHeaders, firstIndex: u.firstIndex },
    });
    for (const dir of [0, 1] as const) {
      const r = u.rest[dir];
      // A chunk of its own: the HTTP dissector may still hold the one being delivered.
      if (r) target.onData({ stream: u.stream, dir, offset: r.offset, buf: r.bytes, start: 0, length: r.bytes.length, firstSec: r.sec, firstNsec: r.nsec, lastSec: r.sec, lastNsec: r.nsec, midStream: false });
    }
  }

  /** A stream resuming under an id whose protocol is remembered: that dissector takes it back, without detection. */
  private resumed(stream: number): Route | undefined {
    const again = this.remembered.get(stream);
    if (!again || this.pending.has(stream)) return undefined;
    this.remembered.delete(stream);
    const clientDir = this.options.facts(stream).clientDir;
    const route: Route = { to: again.dissector, also: null, clientDir };
    this.routes.set(stream, route);
    this.counters.claimed[again.protocol.name]!++;
    again.dissector.open(stream, { clientDir });
    return route;
  }

  private pendingOf(stream: number): Pending {
    let p = this.pending.get(stream);
    if (!p) {
      const facts = this.options.facts(stream);
      const hinted = this.protocols.filter((x) => this.ports.get(x)!.has(facts.ports[0]) || this.ports.get(x)!.has(facts.ports[1]));
      const order = [...hinted, ...this.protocols.filter((x) => !hinted.includes(x))];
      p = { facts, held: [], heldBytes: 0, dirs: [{ bytes: EMPTY, final: false }, { bytes: EMPTY, final: false }], order };
      this.pending.set(stream, p);
    }
    return p;
  }

  private decide(stream: number, p: Pending): void {
    let undecided = false;
    const clientDir = p.facts.clientDir;
    for (const x of p.order) {
      for (const dir of [0, 1] as const) {
        const d = p.dirs[dir];
        if (d.bytes.length === 0) {
          if (!d.final) undecided = true;
          continue;
        }
        let v: Verdict;
        try {
          v = x.protocol.detect(d.bytes, clientDir === undefined ? undefined : clientDir === dir);
        } catch {
          v = 'no';
        }
        if (v === 'yes') {
          this.settle(stream, p, x);
          return;
        }
        if (v === 'more' && !d.final) undecided = true;
      }
    }
    // No `yes` within the limit: one direction sent its fill, or the held bytes outgrew what
    // detection can use (a direction that keeps sending while the other is silent).
    const full = p.dirs.some((d) => d.bytes.length >= this.maxDetect) || p.heldBytes > 4 * this.maxDetect;
    if (!undecided || full) this.settle(stream, p, null);
  }

  private settle(stream: number, p: Pending, x: RoutedProtocol | null): void {
    this.pending.delete(stream);
    this.heldBytes -= p.heldBytes;
    const route: Route = { to: x?.dissector ?? null, also: null, clientDir: p.facts.clientDir };
    this.routes.set(stream, route);
    if (!x) {
      this.counters.unclaimed++;
      return;
    }
    this.counters.claimed[x.protocol.name]!++;
    x.dissector.open(stream, { clientDir: p.facts.clientDir });
    // Replay; an upgrade during the replay re-routes the rest.
    for (const h of p.held) this.deliver(route.to ?? x.dissector, h, stream, route);
  }

  private deliver(to: TcpDissector, h: Held, stream: number, route: Route): void {
    const target = route.to ?? to;
    if (h.kind === 'data') {
      const c = this.chunk;
      c.stream = stream;
      c.dir = h.dir;
      c.offset = h.offset;
      c.buf = h.bytes;
      c.start = 0;
      c.length = h.bytes.length;
      [c.firstSec, c.firstNsec, c.lastSec, c.lastNsec] = h.t;
      c.midStream = h.midStream;
      target.onData(c);
    } else {
      const g = this.gap;
      g.stream = stream;
      g.dir = h.dir;
      g.offset = h.offset;
      g.length = h.length;
      g.reason = h.reason;
      g.sec = h.sec;
      g.nsec = h.nsec;
      target.onGap(g);
    }
  }
}
