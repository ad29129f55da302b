import { CaptureReader, pcapHeader, pcapngPacketSize, pcapngSectionHeader, pcapPacketSize, writePcapPacket, writePcapngPacket, type RawPacket } from '@kubeshark-mcp/capture';
import { ERROR_CODES, TrafficSourceError, type PcapFormat } from '@kubeshark-mcp/mcp-core';
import { VERSION } from './version';

interface Queued {
  tsSec: number;
  tsNsec: number;
  linkType: number;
  origLen: number;
  data: Buffer;
}

interface Input {
  node: string;
  reader: CaptureReader;
  queue: Queued[];
  head: number;
  queuedBytes: number;
  ended: boolean;
  /** pcapng interface id in the output per link type of this input. */
  interfaces: Map<number, number>;
}

const pad4 = (n: number): number => (n + 3) & ~3;

/**
 * A pcapng interface description block with nanosecond timestamps, naming the interface
 * (if_name, option 2) after the node it was captured on, so Wireshark shows where each packet
 * came from.
 */
export function namedInterface(linkType: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const len = 16 + 4 + pad4(n.length) + 8 + 4 + 4; // header, if_name, if_tsresol, endofopt, trailer
  const b = Buffer.alloc(len);
  b.writeUInt32LE(1, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt16LE(linkType, 8);
  b.writeUInt32LE(0, 12);
  let at = 16;
  b.writeUInt16LE(2, at);
  b.writeUInt16LE(n.length, at + 2);
  n.copy(b, at + 4);
  at += 4 + pad4(n.length);
  b.writeUInt16LE(9, at); // if_tsresol: 10^-9
  b.writeUInt16LE(1, at + 2);
  b[at + 4] = 9;
  b.writeUInt32LE(len, len - 4);
  return b;
}

/**
 * Merges several workers' capture streams into one file in timestamp order: a k-way merge that
 * writes a packet only once every input still open has one queued (or has ended), so the
 * output is exactly ordered whatever the inputs' pacing, provided each input is in time order
 * (a live capture's store is; a worker that replayed files of overlapping times in sequence
 * holds them in replay order, and the merge keeps that order within the worker). pcapng output gets one interface per
 * (node, link type), named after the node; classic pcap output needs one link type overall.
 * Ties keep input order (then each input's own order).
 *
 * Memory: packets wait in per-input queues until every input has caught up; `queuedBytes`
 * tells the caller when to pause an input that runs ahead.
 */
export class PcapMerger {
  private readonly inputs: Input[];
  private started = false;
  private nextInterface = 0;
  private pcapLinkType: number | undefined;
  /** Packets written to the output. */
  packets = 0;

  constructor(
    nodes: readonly string[],
    private readonly format: PcapFormat,
    /** Receives output bytes, in order. */
    private readonly write: (chunk: Buffer) => void,
  ) {
    this.inputs = nodes.map((node) => {
      const input: Input = { node, reader: undefined as unknown as CaptureReader, queue: [], head: 0, queuedBytes: 0, ended: false, interfaces: new Map() };
      input.reader = new CaptureReader((p: RawPacket) => {
        // The reader reuses its buffers: copy the packet out.
        const data = Buffer.from(p.buf.subarray(p.offset, p.offset + p.capLen));
        input.queue.push({ tsSec: p.tsSec, tsNsec: p.tsNsec, linkType: p.linkType, origLen: p.origLen, data });
        input.queuedBytes += data.length;
      });
      return input;
    });
  }

  /** Bytes of input `i` waiting for the other inputs. */
  queuedBytes(i: number): number {
    return this.inputs[i]!.queuedBytes;
  }

  /** Feeds the next chunk of input `i`'s capture file; writes what can be written. */
  push(i: number, chunk: Buffer): void {
    this.inputs[i]!.reader.push(chunk);
    this.drain();
  }

  /** Input `i` is complete; writes what can be written. */
  end(i: number): void {
    const input = this.inputs[i]!;
    if (input.ended) return;
    input.reader.end();
    input.ended = true;
    this.drain();
  }

  /** True when every input has ended and everything is written. */
  get done(): boolean {
    return this.inputs.every((x) => x.ended && x.head === x.queue.length);
  }

  /** Call once every input has ended: a classic pcap without packets still gets its header. */
  finish(): void {
    if (this.format === 'pcap' && this.pcapLinkType === undefined) {
      this.pcapLinkType = 1;
      this.write(pcapHeader(1));
    }
  }

  private drain(): void {
    const parts: Buffer[] = [];
    if (!this.started && this.format === 'pcapng') {
      parts.push(pcapngSectionHeader(`kubeshark-mcp hub ${VERSION}`));
      this.started = true;
    }
    for (;;) {
      let best: Input | undefined;
      let blocked = false;
      for (const x of this.inputs) {
        const p = x.queue[x.head];
        if (!p) {
          if (!x.ended) blocked = true;
          continue;
        }
        const b = best?.queue[best.head];
        if (!b || p.tsSec < b.tsSec || (p.tsSec === b.tsSec && p.tsNsec < b.tsNsec)) best = x;
      }
      if (blocked || !best) break;
      const p = best.queue[best.head]!;
      best.queue[best.head++] = undefined as unknown as Queued;
      best.queuedBytes -= p.data.length;
      if (best.head > 1024 && best.head * 2 > best.queue.length) {
        best.queue.splice(0, best.head);
        best.head = 0;
      }
      parts.push(this.record(best, p));
      this.packets++;
    }
    if (parts.length) this.write(Buffer.concat(parts));
  }

  private record(input: Input, p: Queued): Buffer {
    if (this.format === 'pcap') {
      const parts: Buffer[] = [];
      if (this.pcapLinkType === undefined) {
        this.pcapLinkType = p.linkType;
        parts.push(pcapHeader(p.linkType));
      } else if (this.pcapLinkType !== p.linkType) {
        throw new TrafficSourceError(ERROR_CODES.INVALID_ARGUMENT, `the packets have more than one link type (${this.pcapLinkType} and ${p.linkType}); classic pcap holds one: use format pcapng`, { field: 'format' });
      }
      const b = Buffer.alloc(pcapPacketSize(p.data.length));
      writePcapPacket(b, 0, p.tsSec, p.tsNsec, p.data, p.origLen);
      parts.push(b);
      return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    }
    const parts: Buffer[] = [];
    let id = input.interfaces.get(p.linkType);
    if (id === undefined) {
      id = this.nextInterface++;
      input.interfaces.set(p.linkType, id);
      parts.push(namedInterface(p.linkType, input.interfaces.size === 1 ? input.node : `${input.node}/linktype-${p.linkType}`));
    }
    const b = Buffer.alloc(pcapngPacketSize(p.data.length));
    writePcapngPacket(b, 0, id, p.tsSec, p.tsNsec, p.data, p.origLen);
    parts.push(b);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}
