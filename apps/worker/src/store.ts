import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import {
  CaptureReader,
  pcapngInterface,
  pcapngPacketSize,
  pcapngSectionHeader,
  writePcapngPacket,
  type RawPacket,
} from '@kubeshark-mcp/capture';

/**
 * The worker's raw packet store: a bounded ring of pcapng segment files on disk. Packets are
 * appended as captured (byte for byte, nanosecond timestamps); a segment is closed at
 * `segmentBytes`, and the oldest segments are deleted when the ring exceeds `maxBytes` or its
 * data is older than `maxAgeMs`. Each segment's time range is kept in memory as the index.
 *
 * The ring holds the current run's packets, like the in-memory flow table: it starts empty
 * (segments left by an earlier run are deleted, since their flows are gone and a replay would
 * store its packets twice). What must outlive a restart goes into a snapshot.
 */

export interface PacketStoreOptions {
  dir: string;
  /** A segment is closed once it reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** The ring's size limit (default 1 GiB). */
  maxBytes?: number;
  /** Segments whose newest packet is older than this (relative to the newest stored packet) are dropped. */
  maxAgeMs?: number;
  /** Bytes buffered in memory before a write to disk (default 1 MiB). */
  flushBytes?: number;
}

export interface SegmentInfo {
  file: string;
  /** Microseconds since the epoch; 0 when the segment is empty. */
  oldestUs: number;
  newestUs: number;
  packets: number;
  bytes: number;
}

export interface StoreStats {
  segments: number;
  packets: number;
  bytes: number;
  oldestUs: number;
  newestUs: number;
  /** Segments, packets and bytes deleted by retention. */
  evictedSegments: number;
  evictedPackets: number;
  evictedBytes: number;
}

const SEGMENT_RE = /^segment-(\d{10})\.pcapng$/;
const APPLICATION = 'kubeshark-mcp worker';

interface OpenSegment extends SegmentInfo {
  fd: number;
  seq: number;
  interfaces: Map<number, number>; // link type -> interface id
}

export class PacketStore {
  private readonly segments: (SegmentInfo & { seq: number })[] = [];
  private current: OpenSegment | undefined;
  private buf: Buffer;
  private used = 0;
  private nextSeq = 1;
  private evicted = { segments: 0, packets: 0, bytes: 0 };
  private readonly segmentBytes: number;
  private readonly maxBytes: number;
  private readonly maxAgeUs: number;

  private constructor(readonly options: PacketStoreOptions) {
    this.segmentBytes = options.segmentBytes ?? 64 * 1024 * 1024;
    this.maxBytes = options.maxBytes ?? 1024 * 1024 * 1024;
    this.maxAgeUs = (options.maxAgeMs ?? 0) * 1000;
    this.buf = Buffer.allocUnsafe(Math.max(options.flushBytes ?? 1024 * 1024, 64 * 1024));
  }

  /** Opens a store directory (creating it), deleting segments an earlier run left there. */
  static open(options: PacketStoreOptions): PacketStore {
    mkdirSync(options.dir, { recursive: true });
    for (const name of readdirSync(options.dir)) {
      if (SEGMENT_RE.test(name)) rmSync(path.join(options.dir, name), { force: true });
    }
    return new PacketStore(options);
  }

  /** Appends one packet. Synchronous; disk writes happen in `flushBytes` batches. */
  append(p: RawPacket): void {
    let seg = this.current;
    if (!seg || seg.bytes >= this.segmentBytes) seg = this.rotate();
    let ifId = seg.interfaces.get(p.linkType);
    if (ifId === undefined) {
      ifId = seg.interfaces.size;
      seg.interfaces.set(p.linkType, ifId);
      this.write(pcapngInterface(p.linkType));
    }
    const size = pcapngPacketSize(p.capLen);
    if (this.used + size > this.buf.length) {
      this.flush();
      if (size > this.buf.length) this.buf = Buffer.allocUnsafe(size);
    }
    this.used = writePcapngPacket(this.buf, this.used, ifId, p.tsSec, p.tsNsec, p.buf.subarray(p.offset, p.offset + p.capLen), p.origLen);
    seg.bytes += size;
    seg.packets++;
    const us = p.tsSec * 1e6 + Math.floor(p.tsNsec / 1000);
    if (seg.oldestUs === 0 || us < seg.oldestUs) seg.oldestUs = us;
    if (us > seg.newestUs) seg.newestUs = us;
  }

  /** Writes buffered packets to disk, so readers see everything appended so far. */
  flush(): void {
    if (this.used === 0 || !this.current) return;
    let off = 0;
    while (off < this.used) off += writeSync(this.current.fd, this.buf, off, this.used - off);
    this.used = 0;
  }

  /** Segments holding packets in [sinceUs, untilUs] (0 = unbounded), oldest first, flushed. */
  segmentsFor(sinceUs = 0, untilUs = 0): SegmentInfo[] {
    this.flush();
    return this.all().filter((s) => s.packets > 0 && (!sinceUs || s.newestUs >= sinceUs) && (!untilUs || s.oldestUs <= untilUs));
  }

  stats(): StoreStats {
    const all = this.all().filter((s) => s.packets > 0);
    return {
      segments: all.length,
      packets: all.reduce((n, s) => n + s.packets, 0),
      bytes: all.reduce((n, s) => n + s.bytes, 0),
      oldestUs: all.length ? Math.min(...all.map((s) => s.oldestUs)) : 0,
      newestUs: all.length ? Math.max(...all.map((s) => s.newestUs)) : 0,
      evictedSegments: this.evicted.segments,
      evictedPackets: this.evicted.packets,
      evictedBytes: this.evicted.bytes,
    };
  }

  close(): void {
    this.flush();
    if (this.current) {
      fsyncSync(this.current.fd);
      closeSync(this.current.fd);
      this.segments.push(this.info(this.current));
      this.current = undefined;
    }
  }

  private all(): SegmentInfo[] {
    return this.current ? [...this.segments, this.info(this.current)] : [...this.segments];
  }

  private info(s: OpenSegment): SegmentInfo & { seq: number } {
    return { file: s.file, oldestUs: s.oldestUs, newestUs: s.newestUs, packets: s.packets, bytes: s.bytes, seq: s.seq };
  }

  private write(block: Buffer): void {
    if (this.used + block.length > this.buf.length) this.flush();
    block.copy(this.buf, this.used);
    this.used += block.length;
    this.current!.bytes += block.length;
  }

  private rotate(): OpenSegment {
    if (this.current) {
      this.flush();
      closeSync(this.current.fd);
      this.segments.push(this.info(this.current));
    }
    const seq = this.nextSeq++;
    const file = path.join(this.options.dir, `segment-${String(seq).padStart(10, '0')}.pcapng`);
    this.current = { file, fd: openSync(file, 'w'), seq, interfaces: new Map(), oldestUs: 0, newestUs: 0, packets: 0, bytes: 0 };
    this.write(pcapngSectionHeader(APPLICATION));
    this.enforceRetention();
    return this.current;
  }

  /** Deletes the oldest closed segments while the ring is over its size or age limit. */
  private enforceRetention(): void {
    const total = (): number => this.segments.reduce((n, s) => n + s.bytes, 0) + (this.current?.bytes ?? 0);
    const newest = Math.max(0, ...this.all().map((s) => s.newestUs));
    while (this.segments.length > 0) {
      const oldest = this.segments[0]!;
      const tooBig = total() > this.maxBytes;
      const tooOld = this.maxAgeUs > 0 && oldest.newestUs > 0 && newest - oldest.newestUs > this.maxAgeUs;
      if (!tooBig && !tooOld) break;
      this.segments.shift();
      rmSync(oldest.file, { force: true });
      this.evicted.segments++;
      this.evicted.packets += oldest.packets;
      this.evicted.bytes += oldest.bytes;
    }
  }
}

/**
 * Feeds a capture file through a CaptureReader in 1 MiB reads, awaiting `afterChunk` between
 * reads so a consumer can apply back-pressure. Format errors are returned, not thrown: what
 * was whole has been delivered.
 */
export async function readFileChunks(
  file: string,
  onPacket: (p: RawPacket) => void,
  afterChunk?: () => Promise<void>,
): Promise<{ packets: number; error?: Error }> {
  const reader = new CaptureReader(onPacket);
  const fh = await open(file, 'r');
  const chunk = Buffer.allocUnsafe(1024 * 1024);
  try {
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      reader.push(chunk.subarray(0, bytesRead));
      if (afterChunk) await afterChunk();
    }
    reader.end();
    return { packets: reader.packets };
  } catch (err) {
    return { packets: reader.packets, error: err as Error };
  } finally {
    await fh.close();
  }
}
