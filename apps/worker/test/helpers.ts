import { readdirSync } from 'node:fs';
import { loadGolden, type Golden, type GoldenStream } from '@kubeshark-mcp/testkit';
import { DEMO_DIR } from '../src/cli';

/**
 * Demo captures are fixture copies named "<origin>_<file>"; their goldens live under
 * "<origin>/<file>". The demo folder also holds the demo's cluster map, which is no capture.
 */
export function demoGoldens(): Golden[] {
  return readdirSync(DEMO_DIR)
    .filter((f) => /\.(pcap|pcapng)(\.gz)?$/.test(f))
    .sort()
    .map((f) => loadGolden(f.replace('_', '/')));
}

export interface ExpectedFlow {
  protocol: 'tcp' | 'udp';
  /** "ip:port" of both ends, sorted, so direction-free matching works. */
  ends: string;
  /** Packets, bytes and payload bytes sent by each end, keyed by "ip:port". */
  sent: Record<string, { packets: number; bytes: number; payload_bytes: number }>;
  /** tcp.analysis.initial_rtt in microseconds, when tshark reports one. */
  irttUs?: number;
}

export const ends = (a: string, b: string): string => [a, b].sort().join(' <> ');

/** tshark's conversations of some captures, as direction-free expectations. */
export function expectedFlows(goldens: Golden[]): ExpectedFlow[] {
  const out: ExpectedFlow[] = [];
  for (const g of goldens) {
    const irtt = new Map(g.handshakes.filter((h) => h.irttS).map((h) => [h.stream, Math.round(Number(h.irttS) * 1e9) / 1000]));
    const add = (protocol: 'tcp' | 'udp', s: GoldenStream): void => {
      const e: ExpectedFlow = {
        protocol,
        ends: ends(s.a, s.b),
        sent: {
          [s.a]: { packets: s.abFrames, bytes: s.abBytes, payload_bytes: s.abPayload },
          [s.b]: { packets: s.baFrames, bytes: s.baBytes, payload_bytes: s.baPayload },
        },
      };
      if (protocol === 'tcp' && irtt.has(s.stream)) e.irttUs = irtt.get(s.stream)!;
      out.push(e);
    };
    g.tcp.forEach((s) => add('tcp', s));
    g.udp.forEach((s) => add('udp', s));
  }
  return out;
}

/** A flow in the shared vocabulary reduced to what tshark can tell us about it. */
export function observed(f: {
  protocol: string;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  client_to_server: { packets: number; bytes: number; payload_bytes: number };
  server_to_client: { packets: number; bytes: number; payload_bytes: number };
  tcp_handshake_server_us?: number;
}): ExpectedFlow {
  const c = `${f.client.ip}:${f.client.port}`;
  const s = `${f.server.ip}:${f.server.port}`;
  const pick = (d: { packets: number; bytes: number; payload_bytes: number }) => ({ packets: d.packets, bytes: d.bytes, payload_bytes: d.payload_bytes });
  const e: ExpectedFlow = { protocol: f.protocol as 'tcp', ends: ends(c, s), sent: { [c]: pick(f.client_to_server), [s]: pick(f.server_to_client) } };
  if (f.tcp_handshake_server_us !== undefined) e.irttUs = f.tcp_handshake_server_us;
  return e;
}

export const byEnds = (a: ExpectedFlow, b: ExpectedFlow): number => (a.ends < b.ends ? -1 : a.ends > b.ends ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0);
