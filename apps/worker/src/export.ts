import {
  IPPROTO_TCP,
  IPPROTO_UDP,
  decodePacket,
  newL4Packet,
  parseIp,
  pcapHeader,
  pcapPacketSize,
  pcapngInterface,
  pcapngPacketSize,
  pcapngSectionHeader,
  writePcapPacket,
  writePcapngPacket,
  type RawPacket,
} from '@kubeshark-mcp/capture';
import { readFileChunks } from './store';

/**
 * PCAP export: packets from stored capture files, filtered by time, addresses, ports,
 * protocol or flows, written byte for byte with their original timestamps as pcapng (any mix
 * of link types) or classic nanosecond pcap (one link type), in chunks a caller streams out.
 */

export type ExportFormat = 'pcapng' | 'pcap';

/** One flow to export: its endpoints, protocol and the time it was active. */
export interface FlowSelector {
  protocol: 'tcp' | 'udp';
  a: { ip: string; port: number };
  b: { ip: string; port: number };
  sinceUs: number;
  untilUs: number;
}

export interface ExportFilter {
  sinceUs?: number;
  untilUs?: number;
  /** Packets with any of these addresses at either end. */
  ips?: string[];
  /** Packets with any of these ports at either end. */
  ports?: number[];
  protocol?: 'tcp' | 'udp';
  /** Packets of any of these flows (in addition to the other conditions). */
  flows?: FlowSelector[];
}

export class ExportError extends Error {
  override readonly name = 'ExportError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

const toBytes = (ip: string, field: string): Buffer => {
  const w = parseIp(ip);
  if (!w) throw new ExportError(field, `"${ip}" is not an IPv4 or IPv6 address`);
  const b = Buffer.alloc(w.version === 4 ? 4 : 16);
  b.writeUInt32BE(w.w0, 0);
  if (w.version === 6) {
    b.writeUInt32BE(w.w1, 4);
    b.writeUInt32BE(w.w2, 8);
    b.writeUInt32BE(w.w3, 12);
  }
  return b;
};

const addrAt = (buf: Buffer, off: number, want: Buffer): boolean => buf.compare(want, 0, want.length, off, off + want.length) === 0;

/** Compiles a filter into a packet predicate; throws ExportError naming a bad field. */
export function packetMatcher(f: ExportFilter): (p: RawPacket) => boolean {
  const ips = (f.ips ?? []).map((ip) => toBytes(ip, 'ips'));
  const ports = new Set(f.ports ?? []);
  const proto = f.protocol === 'tcp' ? IPPROTO_TCP : f.protocol === 'udp' ? IPPROTO_UDP : 0;
  const flows = (f.flows ?? []).map((s) => ({
    proto: s.protocol === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
    a: toBytes(s.a.ip, 'flow_ids'),
    ap: s.a.port,
    b: toBytes(s.b.ip, 'flow_ids'),
    bp: s.b.port,
    sinceUs: s.sinceUs,
    untilUs: s.untilUs,
  }));
  const needsL4 = ips.length > 0 || ports.size > 0 || proto !== 0 || flows.length > 0;
  const l4 = newL4Packet();
  return (p) => {
    const us = p.tsSec * 1e6 + Math.floor(p.tsNsec / 1000);
    if (f.sinceUs && us < f.sinceUs) return false;
    if (f.untilUs && us > f.untilUs) return false;
    if (!needsL4) return true;
    if (decodePacket(p, l4) !== 0) return false;
    const len = l4.ipVersion === 4 ? 4 : 16;
    if (proto && l4.protocol !== proto) return false;
    if (ips.length && !ips.some((ip) => ip.length === len && (addrAt(p.buf, l4.srcOff, ip) || addrAt(p.buf, l4.dstOff, ip)))) return false;
    if (ports.size && !ports.has(l4.srcPort) && !ports.has(l4.dstPort)) return false;
    if (flows.length) {
      const hit = flows.some(
        (s) =>
          s.proto === l4.protocol &&
          s.a.length === len &&
          s.b.length === len &&
          us >= s.sinceUs &&
          us <= s.untilUs &&
          ((addrAt(p.buf, l4.srcOff, s.a) && l4.srcPort === s.ap && addrAt(p.buf, l4.dstOff, s.b) && l4.dstPort === s.bp) ||
            (addrAt(p.buf, l4.srcOff, s.b) && l4.srcPort === s.bp && addrAt(p.buf, l4.dstOff, s.a) && l4.dstPort === s.ap)),
      );
      if (!hit) return false;
    }
    return true;
  };
}

const CHUNK = 256 * 1024;

/** Writes packets into chunks of a capture file of the chosen format. */
export class CaptureFileBuilder {
  private buf = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  private pendingPackets = 0;
  private started = false;
  private readonly interfaces = new Map<number, number>();
  private pcapLinkType: number | undefined;
  packets = 0;
  bytes = 0;

  constructor(
    private readonly format: ExportFormat,
    private readonly sink: (chunk: Buffer, packets: number) => void,
  ) {}

  add(p: RawPacket): void {
    const data = p.buf.subarray(p.offset, p.offset + p.capLen);
    if (this.format === 'pcap') {
      if (this.pcapLinkType === undefined) {
        this.pcapLinkType = p.linkType;
        this.put(pcapHeader(p.linkType));
      } else if (this.pcapLinkType !== p.linkType) {
        throw new ExportError('format', `the packets have more than one link type (${this.pcapLinkType} and ${p.linkType}); classic pcap holds one: export as pcapng`);
      }
      this.reserve(pcapPacketSize(p.capLen));
      this.used = writePcapPacket(this.buf, this.used, p.tsSec, p.tsNsec, data, p.origLen);
    } else {
      if (!this.started) {
        this.started = true;
        this.put(pcapngSectionHeader('kubeshark-mcp export'));
      }
      let id = this.interfaces.get(p.linkType);
      if (id === undefined) {
        id = this.interfaces.size;
        this.interfaces.set(p.linkType, id);
        this.put(pcapngInterface(p.linkType));
      }
      this.reserve(pcapngPacketSize(p.capLen));
      this.used = writePcapngPacket(this.buf, this.used, id, p.tsSec, p.tsNsec, data, p.origLen);
    }
    this.packets++;
    this.pendingPackets++;
    if (this.used >= CHUNK) this.flush();
  }

  /** Emits what is buffered; for an empty export, a valid empty file (pcapng: SHB only). */
  finish(): void {
    if (!this.started && this.format === 'pcapng') {
      this.started = true;
      this.put(pcapngSectionHeader('kubeshark-mcp export'));
    }
    if (this.format === 'pcap' && this.pcapLinkType === undefined) {
      this.pcapLinkType = 1;
      this.put(pcapHeader(1)); // empty: any link type reads as an empty capture
    }
    this.flush();
  }

  private put(block: Buffer): void {
    this.reserve(block.length);
    block.copy(this.buf, this.used);
    this.used += block.length;
  }

  private reserve(n: number): void {
    if (this.used + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
  }

  private flush(): void {
    if (this.used === 0) return;
    const chunk = Buffer.from(this.buf.subarray(0, this.used));
    this.bytes += chunk.length;
    this.sink(chunk, this.pendingPackets);
    this.used = 0;
    this.pendingPackets = 0;
  }
}

/**
 * Exports the matching packets of `files` (in order). `write` receives each chunk and may
 * return a promise to apply back-pressure; `signal` stops the export between chunks.
 */
export async function exportPackets(
  files: string[],
  filter: ExportFilter,
  format: ExportFormat,
  write: (chunk: Buffer, packets: number) => Promise<void> | void,
  signal?: AbortSignal,
): Promise<{ packets: number; bytes: number }> {
  const match = packetMatcher(filter);
  const queue: { chunk: Buffer; packets: number }[] = [];
  const builder = new CaptureFileBuilder(format, (chunk, packets) => queue.push({ chunk, packets }));
  const drain = async (): Promise<void> => {
    while (queue.length) {
      const { chunk, packets } = queue.shift()!;
      await write(chunk, packets);
    }
    if (signal?.aborted) throw new ExportError('export', 'export cancelled');
  };
  for (const file of files) {
    let failure: Error | undefined;
    const result = await readFileChunks(
      file,
      (p) => {
        if (failure) return;
        try {
          if (match(p)) builder.add(p);
        } catch (err) {
          failure = err as Error;
        }
      },
      drain,
    );
    if (failure) throw failure;
    if (result.error && result.error.name !== 'CaptureFormatError') throw result.error;
  }
  builder.finish();
  await drain();
  return { packets: builder.packets, bytes: builder.bytes };
}
