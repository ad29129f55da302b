import { decodePacket, FlowTable, IPPROTO_TCP, newL4Packet, packetSide, readCaptureFile, TcpFlag, TcpReassembler, type TcpDirection, type TcpReassemblerOptions } from '@kubeshark-mcp/capture';
import { capturePath } from '@kubeshark-mcp/testkit';
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
