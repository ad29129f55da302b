import { decodePacket, FlowTable, IPPROTO_TCP, newL4Packet, packetSide, readCaptureFile, TcpFlag, TcpReassembler, type TcpDirection, type TcpReassemblerOptions } from '@kubeshark-mcp/capture';
import { capturePath } from '@kubeshark-mcp/testkit';
import { HTTP_PROTOCOL, HttpDissector, type HttpUpgrade } from '../../src/http1';
import { MONGODB_PROTOCOL, MongodbDissector, type MongodbEntry } from '../../src/mongodb';
import { MYSQL_PROTOCOL, MysqlDissector, type MysqlEntry } from '../../src/mysql';
import { WebSocketDissector, type WebSocketEntry } from '../../src/websocket';
import { StreamRouter, type RoutedProtocol } from '../../src/router';
import type { TcpDissector } from '../../src/stream';

export interface FeedResult {
  /** Flow index -> tshark's tcp.stream (TCP flows numbered in order of their first packet). */
  tcpStream: Map<number, number>;
  flows: FlowTable;
  reassembler: TcpReassembler;
}

/**
 * Reads a capture as the worker does (decode -> flow table -> reassembler) and hands every TCP
 * stream, or those `accept` keeps, to `dissector`: `open` with the client's direction (known
 * when the first packet seen was a SYN or SYN-ACK), then the reassembled bytes. Flushes the
 * reassembler and the dissector at the end.
 */
export async function feedCapture(
  capture: string,
  dissector: TcpDissector,
  options: { accept?: (srcPort: number, dstPort: number) => boolean; reassembler?: TcpReassemblerOptions } = {},
): Promise<FeedResult> {
  const reassembler = new TcpReassembler(dissector, options.reassembler);
  const flows = new FlowTable();
  const l4 = newL4Packet();
  const tcpStream = new Map<number, number>();
  const accepted = new Set<number>();
  const result = await readCaptureFile(capturePath(capture), (p) => {
    if (decodePacket(p, l4) !== 0) return;
    const idx = flows.add(p, l4);
    if (l4.protocol !== IPPROTO_TCP) return;
    const side = packetSide(p, l4);
    if (!tcpStream.has(idx)) {
      tcpStream.set(idx, tcpStream.size);
      if (!options.accept || options.accept(l4.srcPort, l4.dstPort)) {
        accepted.add(idx);
        const syn = (l4.tcpFlags & TcpFlag.SYN) !== 0;
        const ack = (l4.tcpFlags & TcpFlag.ACK) !== 0;
        const clientDir: TcpDirection | undefined = syn ? (ack ? ((1 - side) as TcpDirection) : side) : undefined;
        dissector.open(idx, { clientDir });
      }
    }
    if (accepted.has(idx)) reassembler.segmentFromPacket(idx, side, p, l4);
  });
  if (result.error) throw new Error(`${capture}: ${result.error.message}`);
  reassembler.flush();
  dissector.flush();
  return { tcpStream, flows, reassembler };
}

/**
 * Feeds a capture through a stream router, as the worker does. `setup` gets the callback an HTTP
 * dissector passes as `onUpgrade` and returns the protocols (asked by content alone: their port
 * hints are dropped) and the upgrade targets. Every dissector is flushed at the end.
 */
export async function routeCapture(
  capture: string,
  setup: (onUpgrade: (u: HttpUpgrade) => void) => { protocols: RoutedProtocol[]; upgrades?: Record<string, TcpDissector> },
): Promise<StreamRouter> {
  const clientDirs = new Map<number, TcpDirection | undefined>();
  const holder: { router?: StreamRouter } = {};
  const { protocols, upgrades } = setup((u) => holder.router!.upgrade(u));
  const router = new StreamRouter({
    protocols: protocols.map((p) => ({ ...p, protocol: { ...p.protocol, ports: [] } })),
    facts: (s) => ({ clientDir: clientDirs.get(s), ports: [0, 0] }),
    ...(upgrades ? { upgrades } : {}),
  });
  holder.router = router;
  await feedCapture(capture, {
    open: (s, i) => clientDirs.set(s, i.clientDir),
    onData: (c) => router.onData(c),
    onGap: (g) => router.onGap(g),
    onEnd: (e) => router.onEnd(e),
    flush: () => {
      for (const d of new Set([...protocols.map((p) => p.dissector), ...Object.values(upgrades ?? {})])) d.flush();
    },
  });
  return router;
}

/**
 * The production path for the MySQL, MongoDB and WebSocket tests: HTTP, MySQL and MongoDB asked
 * by content alone, WebSocket behind HTTP upgrades; entries go to the sinks given.
 */
export function routeMysqlMongodbWebSocket(
  capture: string,
  sinks: { mysql?: (e: MysqlEntry) => void; mongodb?: (e: MongodbEntry) => void; ws?: (e: WebSocketEntry) => void },
): Promise<StreamRouter> {
  const ignore = (): void => undefined;
  return routeCapture(capture, (onUpgrade) => ({
    protocols: [
      { protocol: HTTP_PROTOCOL, dissector: new HttpDissector(ignore, { onUpgrade }) },
      { protocol: MYSQL_PROTOCOL, dissector: new MysqlDissector(sinks.mysql ?? ignore) },
      { protocol: MONGODB_PROTOCOL, dissector: new MongodbDissector(sinks.mongodb ?? ignore) },
    ],
    upgrades: { websocket: new WebSocketDissector(sinks.ws ?? ignore) },
  }));
}
