import {
  timestampUs,
  type FlowGroup as CaptureGroup,
  type FlowRecord,
  type FlowSummary as CaptureSummary,
  type Percentiles as CapturePercentiles,
  type RttSketch,
  type TcpHealth as CaptureTcpHealth,
} from '@kubeshark-mcp/capture';
import type { Endpoint, Flow, FlowGroup, FlowSummary, Percentiles, TcpHealth } from '@kubeshark-mcp/mcp-core/model';
import type { IdentityLookup } from './k8s';

/**
 * Flow-table records in the shared vocabulary (the mcp-core model), tagged with this worker's
 * node. Both the gRPC service and `analyze` go through here, so they cannot drift apart.
 */

const nsToUs = (ns: number): number => ns / 1000;

const health = (h: CaptureTcpHealth): TcpHealth => ({
  retransmissions: h.retransmissions,
  fast_retransmissions: h.fastRetransmissions,
  spurious_retransmissions: h.spuriousRetransmissions,
  out_of_order: h.outOfOrder,
  duplicate_acks: h.duplicateAcks,
  zero_windows: h.zeroWindows,
  keep_alives: h.keepAlives,
  window_full: h.windowFull,
  lost_segments: h.lostSegments,
  acked_unseen_segments: h.ackedUnseenSegments,
});

/**
 * An address and port with its Kubernetes identity at `tUs` (without a lookup, or for an empty
 * address: just the address).
 */
export function endpointAt(ip: string, port: number, tUs: number, ids?: IdentityLookup): Endpoint {
  return ids && ip ? { ip, port, ...ids.endpoint(ip, tUs) } : { ip, port };
}

/** A flow in the shared vocabulary; with `ids`, its ends carry their identities at its first packet. */
export function flowToModel(f: FlowRecord, node: string, ids?: IdentityLookup): Flow {
  const first = timestampUs(f.firstSeen);
  const flow: Flow = {
    id: `${node}/${f.index}`,
    node,
    protocol: f.protocol,
    client: endpointAt(f.client.ip, f.client.port, first, ids),
    server: endpointAt(f.server.ip, f.server.port, first, ids),
    client_to_server: { packets: f.clientToServer.packets, bytes: f.clientToServer.bytes, payload_bytes: f.clientToServer.payloadBytes },
    server_to_client: { packets: f.serverToClient.packets, bytes: f.serverToClient.bytes, payload_bytes: f.serverToClient.payloadBytes },
    first_seen_us: first,
    last_seen_us: timestampUs(f.lastSeen),
    state: f.state,
    syn_count: f.synCount,
    fin_count: f.finCount,
    rst_count: f.rstCount,
    ...(f.protocol === 'tcp' ? { completeness: f.completeness } : {}),
  };
  if (f.tcpHealth) {
    flow.client_to_server.tcp = health(f.tcpHealth.clientToServer);
    flow.server_to_client.tcp = health(f.tcpHealth.serverToClient);
  }
  if (f.tcpHandshakeClientNs !== undefined) flow.tcp_handshake_client_us = nsToUs(f.tcpHandshakeClientNs);
  if (f.tcpHandshakeServerNs !== undefined) flow.tcp_handshake_server_us = nsToUs(f.tcpHandshakeServerNs);
  return flow;
}

const percentiles = (p: CapturePercentiles, sketch: RttSketch): Percentiles => ({
  count: p.count,
  p50_us: p.p50Us,
  p90_us: p.p90Us,
  p99_us: p.p99Us,
  sketch: sketch.toBytes(),
});

export function groupToModel(g: CaptureGroup): FlowGroup {
  return {
    key: g.key,
    client: g.client.ip ? { ip: g.client.ip } : {},
    server: g.server.ip ? { ip: g.server.ip } : {},
    flows: g.flows,
    tcp_flows: g.tcpFlows,
    udp_flows: g.udpFlows,
    client_to_server: { packets: g.clientToServer.packets, bytes: g.clientToServer.bytes, payload_bytes: g.clientToServer.payloadBytes },
    server_to_client: { packets: g.serverToClient.packets, bytes: g.serverToClient.bytes, payload_bytes: g.serverToClient.payloadBytes },
    first_seen_us: timestampUs(g.firstSeen),
    last_seen_us: timestampUs(g.lastSeen),
    tcp_handshake_client: percentiles(g.handshakeClient, g.handshakeClientSketch),
    tcp_handshake_server: percentiles(g.handshakeServer, g.handshakeServerSketch),
  };
}

export function summaryToModel(s: CaptureSummary): Omit<FlowSummary, 'nodes'> {
  const talker = (t: CaptureSummary['topByBytes'][number]): FlowSummary['top_by_bytes'][number] => ({
    ip: t.ip,
    tx_packets: t.txPackets,
    rx_packets: t.rxPackets,
    tx_bytes: t.txBytes,
    rx_bytes: t.rxBytes,
    flows: t.flows,
  });
  return {
    total_flows: s.totalFlows,
    total_packets: s.totalPackets,
    total_bytes: s.totalBytes,
    tcp: s.tcp,
    udp: s.udp,
    unique_clients: s.uniqueClients,
    unique_servers: s.uniqueServers,
    top_by_bytes: s.topByBytes.map(talker),
    top_by_packets: s.topByPackets.map(talker),
    tcp_handshake_client: percentiles(s.handshakeClient, s.handshakeClientSketch),
    tcp_handshake_server: percentiles(s.handshakeServer, s.handshakeServerSketch),
    first_seen_us: s.firstSeen ? timestampUs(s.firstSeen) : 0,
    last_seen_us: s.lastSeen ? timestampUs(s.lastSeen) : 0,
  };
}
