import { RttSketch } from '@kubeshark-mcp/capture';
import type { ApiStatsGroup } from '@kubeshark-mcp/mcp-core';
import type { WorkerClient } from '@kubeshark-mcp/proto';
import type * as grpc from '@grpc/grpc-js';

type UnaryResult<F> = F extends (arg: never, callback: grpc.requestCallback<infer T>) => grpc.ClientUnaryCall ? T : never;
export type ProtoApiStats = UnaryResult<WorkerClient['GetApiStats']>;

/**
 * Combines the API statistics of several workers. Groups with the same server, protocol,
 * method and endpoint add their counts and status counts and merge their latency sketches;
 * the percentiles of a merged group come from the merged sketch (within the sketch's relative
 * accuracy), never from averaging percentiles. A group only one worker reported keeps that
 * worker's exact percentiles.
 */
/** A proto endpoint as the TrafficSource port has it (empty identity fields left out). */
function endpointOf(e: NonNullable<ProtoApiStats['groups'][number]['src']>): ApiStatsGroup['src'] & object {
  const out: NonNullable<ApiStatsGroup['src']> = { ip: e.ip, port: e.port };
  for (const k of ['name', 'namespace', 'pod', 'service', 'node'] as const) if (e[k]) out[k] = e[k];
  return out;
}

export function mergeApiStats(responses: readonly ProtoApiStats[]): { groups: ApiStatsGroup[]; entries: number } {
  interface Acc {
    group: ApiStatsGroup;
    sketch: RttSketch | undefined;
    parts: number;
    statuses: Map<number, number>;
  }
  const acc = new Map<string, Acc>();
  let entries = 0;
  for (const r of responses) {
    entries += r.entries;
    for (const g of r.groups) {
      const client = g.src?.ip ? g.src : undefined;
      const key = `${client ? `${client.ip}\u0000` : ''}${g.service}\u0000${g.protocol}\u0000${g.method}\u0000${g.endpoint}`;
      const lat = g.latency ?? { count: 0, p50_us: 0, p90_us: 0, p99_us: 0, sketch: new Uint8Array(0) };
      const sketch = lat.sketch && lat.sketch.length > 0 ? RttSketch.fromBytes(lat.sketch) : undefined;
      const a = acc.get(key);
      if (!a) {
        acc.set(key, {
          group: {
            ...(client ? { src: endpointOf(client) } : {}),
            ...(g.dst?.ip ? { dst: endpointOf(g.dst) } : {}),
            service: g.service,
            protocol: g.protocol,
            method: g.method,
            endpoint: g.endpoint,
            requests: g.requests,
            failures: g.failures,
            unanswered: g.unanswered,
            statuses: [],
            latency: { count: lat.count, p50_us: lat.p50_us, p90_us: lat.p90_us, p99_us: lat.p99_us },
            first_us: g.first_us,
            last_us: g.last_us,
          },
          sketch,
          parts: 1,
          statuses: new Map(g.statuses.map((s) => [s.status_code, s.count])),
        });
        continue;
      }
      const m = a.group;
      m.requests += g.requests;
      m.failures += g.failures;
      m.unanswered += g.unanswered;
      m.first_us = Math.min(m.first_us, g.first_us);
      m.last_us = Math.max(m.last_us, g.last_us);
      for (const s of g.statuses) a.statuses.set(s.status_code, (a.statuses.get(s.status_code) ?? 0) + s.count);
      if (sketch) a.sketch = a.sketch ? a.sketch.merge(sketch) : sketch;
      a.parts++;
    }
  }
  const groups = [...acc.values()].map((a) => {
    const g = a.group;
    g.statuses = [...a.statuses].map(([status_code, count]) => ({ status_code, count })).sort((x, y) => y.count - x.count || x.status_code - y.status_code);
    if (a.parts > 1) {
      const s = a.sketch;
      g.latency = s && s.count > 0 ? { count: s.count, p50_us: s.quantile(0.5)!, p90_us: s.quantile(0.9)!, p99_us: s.quantile(0.99)! } : { count: 0, p50_us: 0, p90_us: 0, p99_us: 0 };
    }
    return g;
  });
  return { groups, entries };
}
