import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { RttSketch } from '@kubeshark-mcp/capture';
import type { Flow, FlowGroup, FlowOrder, FlowSummary, Percentiles, Talker } from '@kubeshark-mcp/mcp-core';

/**
 * Merging the answers of several workers. Every function here is pure: the fan-out in
 * grpc-source.ts collects per-worker answers and hands them over.
 */

const totalBytes = (x: { client_to_server: { bytes: number }; server_to_client: { bytes: number } }): number => x.client_to_server.bytes + x.server_to_client.bytes;
const totalPackets = (x: { client_to_server: { packets: number }; server_to_client: { packets: number } }): number => x.client_to_server.packets + x.server_to_client.packets;

type Ordered = { client_to_server: { bytes: number; packets: number }; server_to_client: { bytes: number; packets: number }; first_seen_us: number; last_seen_us: number };

/** The workers' row orders (packages/capture flow-query ORDER), on the wire model. */
export const ROW_ORDER: Record<FlowOrder, (a: Ordered, b: Ordered) => number> = {
  bytes: (a, b) => totalBytes(b) - totalBytes(a),
  packets: (a, b) => totalPackets(b) - totalPackets(a),
  recent: (a, b) => b.last_seen_us - a.last_seen_us,
  oldest: (a, b) => a.first_seen_us - b.first_seen_us,
};

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** "<node>/<index>" -> index; flows of one worker are ordered by it on ties. */
const flowIndex = (id: string): number => Number(id.slice(id.lastIndexOf('/') + 1));

/**
 * Merges per-worker flow lists, each sorted in `order` and holding (at least) that worker's
 * first `offset + limit` rows, into the global page [offset, offset + limit). Ties break by node,
 * then flow index: each worker breaks its ties by index, so the merged order agrees with every
 * worker's order and pages neither repeat nor skip rows.
 */
export function mergeFlows(lists: readonly Flow[][], order: FlowOrder, offset: number, limit: number): Flow[] {
  const c = ROW_ORDER[order];
  return lists
    .flat()
    .sort((a, b) => c(a, b) || cmp(a.node, b.node) || flowIndex(a.id) - flowIndex(b.id))
    .slice(offset, offset + limit);
}

function addStats(into: FlowGroup['client_to_server'], d: FlowGroup['client_to_server']): void {
  into.packets += d.packets;
  into.bytes += d.bytes;
  into.payload_bytes += d.payload_bytes;
  if (d.tcp) {
    if (!into.tcp) into.tcp = { ...d.tcp };
    else for (const k of Object.keys(d.tcp) as (keyof typeof d.tcp)[]) into.tcp[k] += d.tcp[k];
  }
}

const quantiles = (s: RttSketch | undefined): Percentiles =>
  s && s.count > 0 ? { count: s.count, p50_us: s.quantile(0.5)!, p90_us: s.quantile(0.9)!, p99_us: s.quantile(0.99)!, sketch: s.toBytes() } : { count: 0, p50_us: 0, p90_us: 0, p99_us: 0 };

/**
 * Percentiles of several workers' values: exact when one worker had values (its own nearest-rank
 * percentiles pass through), otherwise from the merged sketches (within the sketch's 1 %
 * relative accuracy; percentiles are never averaged).
 */
export function mergePercentiles(parts: readonly Percentiles[]): Percentiles {
  const withValues = parts.filter((p) => p.count > 0);
  if (withValues.length === 0) return { count: 0, p50_us: 0, p90_us: 0, p99_us: 0 };
  if (withValues.length === 1) return { ...withValues[0]! };
  let merged: RttSketch | undefined;
  for (const p of withValues) {
    if (!p.sketch?.length) continue;
    const s = RttSketch.fromBytes(p.sketch);
    merged = merged ? merged.merge(s) : s;
  }
  return quantiles(merged);
}

/**
 * Merges aggregated groups: groups with the same key add their counters and merge their
 * handshake sketches. Each list must hold all of its worker's groups (counts of a group are only
 * known once every worker's part is in). Order: `order`, ties by first appearance (worker order,
 * then position), which keeps one worker's own order.
 */
export function mergeGroups(lists: readonly FlowGroup[][], order: FlowOrder): FlowGroup[] {
  const acc = new Map<string, { group: FlowGroup; client: Percentiles[]; server: Percentiles[]; rank: number }>();
  let rank = 0;
  for (const list of lists) {
    for (const g of list) {
      const a = acc.get(g.key);
      if (!a) {
        acc.set(g.key, {
          group: {
            ...g,
            client: { ...g.client },
            server: { ...g.server },
            client_to_server: { ...g.client_to_server, ...(g.client_to_server.tcp ? { tcp: { ...g.client_to_server.tcp } } : {}) },
            server_to_client: { ...g.server_to_client, ...(g.server_to_client.tcp ? { tcp: { ...g.server_to_client.tcp } } : {}) },
          },
          client: [g.tcp_handshake_client],
          server: [g.tcp_handshake_server],
          rank: rank++,
        });
        continue;
      }
      const m = a.group;
      m.flows += g.flows;
      m.tcp_flows += g.tcp_flows;
      m.udp_flows += g.udp_flows;
      addStats(m.client_to_server, g.client_to_server);
      addStats(m.server_to_client, g.server_to_client);
      m.first_seen_us = Math.min(m.first_seen_us, g.first_seen_us);
      m.last_seen_us = Math.max(m.last_seen_us, g.last_seen_us);
      a.client.push(g.tcp_handshake_client);
      a.server.push(g.tcp_handshake_server);
    }
  }
  const c = ROW_ORDER[order];
  return [...acc.values()]
    .map((a) => {
      a.group.tcp_handshake_client = mergePercentiles(a.client);
      a.group.tcp_handshake_server = mergePercentiles(a.server);
      return a;
    })
    .sort((x, y) => c(x.group, y.group) || x.rank - y.rank)
    .map((a) => a.group);
}

/** How many top talkers the hub asks each worker for, per one it returns. */
export const TOP_TALKER_FACTOR = 4;

type SummaryPart = Omit<FlowSummary, 'nodes'>;

/**
 * Merges flow summaries. Totals add. Handshake percentiles come from merged sketches (exact
 * when one worker had handshakes).
 *
 * - `unique_clients` / `unique_servers` are the sums of the workers' counts: an upper bound, since
 *   one address seen on two nodes counts twice (the workers send counts, not address sets).
 * - Top talkers are recomputed from the union of the workers' lists (each asked for
 *   `TOP_TALKER_FACTOR` times as many): an address's counters add over the workers that listed
 *   it. The result is exact when each worker's list is complete (it has fewer talkers than it was
 *   asked for); otherwise an address just below one worker's cut can miss counters from it.
 */
export function mergeSummaries(parts: readonly SummaryPart[], top: number): SummaryPart {
  const talkers = (pick: (s: SummaryPart) => Talker[], key: (t: Talker) => number): Talker[] => {
    const byIp = new Map<string, Talker>();
    for (const p of parts) {
      for (const t of pick(p)) {
        const m = byIp.get(t.ip);
        if (!m) byIp.set(t.ip, { ...t });
        else {
          m.tx_packets += t.tx_packets;
          m.rx_packets += t.rx_packets;
          m.tx_bytes += t.tx_bytes;
          m.rx_bytes += t.rx_bytes;
          m.flows += t.flows;
        }
      }
    }
    return [...byIp.values()].sort((a, b) => key(b) - key(a) || cmp(a.ip, b.ip)).slice(0, top);
  };
  const sum = (f: (s: SummaryPart) => number): number => parts.reduce((n, p) => n + f(p), 0);
  const seen = parts.filter((p) => p.total_flows > 0);
  return {
    total_flows: sum((p) => p.total_flows),
    total_packets: sum((p) => p.total_packets),
    total_bytes: sum((p) => p.total_bytes),
    tcp: { flows: sum((p) => p.tcp.flows), packets: sum((p) => p.tcp.packets), bytes: sum((p) => p.tcp.bytes) },
    udp: { flows: sum((p) => p.udp.flows), packets: sum((p) => p.udp.packets), bytes: sum((p) => p.udp.bytes) },
    unique_clients: sum((p) => p.unique_clients),
    unique_servers: sum((p) => p.unique_servers),
    top_by_bytes: talkers((p) => p.top_by_bytes, (t) => t.tx_bytes + t.rx_bytes),
    top_by_packets: talkers((p) => p.top_by_packets, (t) => t.tx_packets + t.rx_packets),
    tcp_handshake_client: mergePercentiles(parts.map((p) => p.tcp_handshake_client)),
    tcp_handshake_server: mergePercentiles(parts.map((p) => p.tcp_handshake_server)),
    first_seen_us: seen.length ? Math.min(...seen.map((p) => p.first_seen_us)) : 0,
    last_seen_us: seen.length ? Math.max(...seen.map((p) => p.last_seen_us)) : 0,
    ...namespaces(parts, top),
  };
}

/** Traffic by namespace and cross-namespace pairs of several workers: counts add by key, biggest first again. */
function namespaces(parts: readonly SummaryPart[], top: number): Pick<SummaryPart, 'by_namespace' | 'cross_namespace'> {
  const byNs = new Map<string, NonNullable<SummaryPart['by_namespace']>[number]>();
  const pairs = new Map<string, NonNullable<SummaryPart['cross_namespace']>[number]>();
  for (const p of parts) {
    for (const n of p.by_namespace ?? []) {
      const e = byNs.get(n.namespace) ?? { namespace: n.namespace, flows: 0, packets: 0, bytes: 0 };
      e.flows += n.flows;
      e.packets += n.packets;
      e.bytes += n.bytes;
      byNs.set(n.namespace, e);
    }
    for (const n of p.cross_namespace ?? []) {
      const key = `${n.src_namespace}\u0000${n.dst_namespace}`;
      const e = pairs.get(key) ?? { src_namespace: n.src_namespace, dst_namespace: n.dst_namespace, flows: 0, bytes: 0 };
      e.flows += n.flows;
      e.bytes += n.bytes;
      pairs.set(key, e);
    }
  }
  const out: Pick<SummaryPart, 'by_namespace' | 'cross_namespace'> = {};
  if (byNs.size) out.by_namespace = [...byNs.values()].sort((a, b) => b.bytes - a.bytes || cmp(a.namespace, b.namespace)).slice(0, top);
  if (pairs.size) out.cross_namespace = [...pairs.values()].sort((a, b) => b.bytes - a.bytes || cmp(`${a.src_namespace}/${a.dst_namespace}`, `${b.src_namespace}/${b.dst_namespace}`)).slice(0, top);
  return out;
}

/**
 * The key of a node in a composite cursor: 8 characters of a hash of its name, so the cursor
 * stays short with many nodes (the MCP tools cap their cursors at 4096 characters, and a
 * cursor holds a position for every node that has had calls consumed: about 30 characters a
 * node, around a hundred nodes).
 */
export function nodeKey(node: string): string {
  let key = nodeKeys.get(node);
  if (key === undefined) {
    key = createHash('sha256').update(node).digest('base64url').slice(0, 8);
    if (nodeKeys.size >= 4096) nodeKeys.clear();
    nodeKeys.set(node, key);
  }
  return key;
}
const nodeKeys = new Map<string, string>();

/**
 * The source cursor of list_api_calls across workers: per node (keyed by `nodeKey`), the
 * worker cursor of the last entry consumed from it. Nodes absent from it have had nothing
 * consumed yet. Compact text, not JSON: it travels inside the tool's own (JSON, base64url)
 * cursor. Format: `v1` then `,<key>=<worker cursor>` per node, URI-component encoded; when
 * it is shorter so, `z1,` and the same text deflated, in base64url (worker cursors, which
 * start with timestamps, compress well).
 */
export function encodeCompositeCursor(positions: ReadonlyMap<string, string>): string {
  let plain: string;
  if (positions.size === 1) {
    // One node (every call of a one-worker hub): no sorting, no arrays.
    const [node, c] = positions.entries().next().value as [string, string];
    plain = `v1,${encodeURIComponent(node)}=${encodeURIComponent(c)}`;
  } else {
    const parts = [...positions].sort(([a], [b]) => cmp(a, b)).map(([node, c]) => `${encodeURIComponent(node)}=${encodeURIComponent(c)}`);
    plain = ['v1', ...parts].join(',');
  }
  if (plain.length < 200) return plain;
  const packed = `z1,${deflateRawSync(plain).toString('base64url')}`;
  return packed.length < plain.length ? packed : plain;
}

/** Longest inflated composite cursor accepted: a cursor is small, a forged one must not be a zip bomb. */
const MAX_COMPOSITE_CHARS = 1 << 20;

/** The positions of a composite cursor, or undefined when it is not one this hub wrote. */
export function decodeCompositeCursor(text: string): Map<string, string> | undefined {
  if (text.startsWith('z1,')) {
    const packed = text.slice(3);
    if (!/^[A-Za-z0-9_-]+$/.test(packed)) return undefined;
    let inflated: string;
    try {
      inflated = inflateRawSync(Buffer.from(packed, 'base64url'), { maxOutputLength: MAX_COMPOSITE_CHARS }).toString('utf8');
    } catch {
      return undefined;
    }
    return inflated.startsWith('v1') ? decodeCompositeCursor(inflated) : undefined;
  }
  const [version, ...parts] = text.split(',');
  if (version !== 'v1') return undefined;
  const out = new Map<string, string>();
  for (const p of parts) {
    const m = /^([^=]+)=([^=]*)$/.exec(p);
    if (!m) return undefined;
    try {
      out.set(decodeURIComponent(m[1]!), decodeURIComponent(m[2]!));
    } catch {
      return undefined;
    }
  }
  return out;
}

/** A min-heap by a comparator; the k-way merges use it to pick the next head. */
export class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
