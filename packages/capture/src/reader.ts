import { u16be, u16le, u32be, u32le } from './bytes';

/**
 * Streaming readers for classic pcap (both byte orders, micro- and nanosecond timestamps) and
 * pcapng (section header, interface description, enhanced, simple and obsolete packet blocks;
 * per-interface link type, timestamp resolution and offset).
 *
 * The reader is push-based so the same code reads files, gzip streams and a live `tcpdump -w -`
 * pipe: feed chunks with `push`, call `end` when the input is over. Each packet is handed to
 * the callback as one reused `RawPacket` whose `buf`/`offset` point into the chunk: nothing is
 * copied or allocated per packet, and the view is valid only during the callback.
 */

/** Stable codes for format errors, so callers can tell them apart without parsing messages. */
export type CaptureErrorCode =
  | 'unknown-format'
  | 'unsupported-version'
  | 'bad-record-length'
  | 'bad-block-length'
  | 'bad-block'
  | 'unknown-interface'
  | 'truncated';

/** A capture that cannot be read further. Packets before `offset` were delivered. */
export class CaptureFormatError extends Error {
  override readonly name = 'CaptureFormatError';
  constructor(
    readonly code: CaptureErrorCode,
    message: string,
    /** Byte offset in the input where the problem starts. */
    readonly offset: number,
    /** Packets delivered before the error. */
    readonly packets: number,
  ) {
    super(`${message} (at byte ${offset}, after ${packets} packets)`);
  }
}

/** One captured packet. The object and its buffer are reused: copy what you keep. */
export interface RawPacket {
  /** Buffer holding the packet bytes at [offset, offset + capLen). */
  buf: Buffer;
  offset: number;
  /** Bytes captured (may be less than on the wire when a snap length applied). */
  capLen: number;
  /** Bytes on the wire. */
  origLen: number;
  /** Timestamp: whole seconds since the Unix epoch, and nanoseconds within that second. */
  tsSec: number;
  tsNsec: number;
  /** LINKTYPE_* value of the interface that captured the packet. */
  linkType: number;
  /** pcapng interface id (0 for classic pcap). */
  interfaceId: number;
  /** 1-based frame number, as Wireshark numbers frames. */
  frame: number;
}

export type CaptureFormat = 'pcap' | 'pcapng';

const PCAP_MAGIC_USEC = 0xa1b2c3d4;
const PCAP_MAGIC_NSEC = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;
/** libpcap refuses records larger than this unless the snap length is larger. */
const MAX_RECORD = 262144;
/** pcapng blocks larger than this are taken as corruption rather than buffered forever. */
const MAX_BLOCK = 16 * 1024 * 1024;

interface PcapngInterface {
  linkType: number;
  snapLen: number;
  /** Timestamp units per second, and whether that is a power of ten (exact decimal scaling). */
  unitsPerSecond: number;
  /** Nanoseconds per unit when units are 10^-k with k <= 9; 0 otherwise. */
  nsPerUnit: number;
  offsetSec: number;
}

/**
 * Push parser for pcap and pcapng. Throws `CaptureFormatError` from `push`/`end` when the input
 * is not a capture or is corrupt; packets before that point have already been delivered.
 */
export class CaptureReader {
  /** Packets delivered so far. */
  packets = 0;
  /** Bytes consumed so far. */
  bytesRead = 0;
  private fmt: CaptureFormat | undefined;
  private pending: Buffer | undefined;
  private readonly pkt: RawPacket;
  // classic pcap state
  private le = true;
  private nsec = false;
  private linkType = 0;
  private snapLen = 0;
  // pcapng state
  private interfaces: PcapngInterface[] = [];
  private sawSection = false;

  constructor(private readonly onPacket: (p: RawPacket) => void) {
    this.pkt = {
      buf: Buffer.alloc(0),
      offset: 0,
      capLen: 0,
      origLen: 0,
      tsSec: 0,
      tsNsec: 0,
      linkType: 0,
      interfaceId: 0,
      frame: 0,
    };
  }

  /** The detected format, once the first bytes have arrived. */
  get format(): CaptureFormat | undefined {
    return this.fmt;
  }

  /** Link type of a classic pcap, or of pcapng interface 0. */
  get primaryLinkType(): number | undefined {
    if (this.fmt === 'pcap') return this.linkType;
    return this.interfaces[0]?.linkType;
  }

  /** Feeds the next chunk of the capture. */
  push(chunk: Buffer): void {
    // A record left partial by the last chunk is completed with only the bytes it lacks, so the
    // rest of this chunk is parsed in place instead of copied behind it (records of tens of KiB
    // cross nearly every 64 KiB read).
    let rest = chunk;
    while (this.pending && this.fmt && rest.length > 0) {
      const p = this.pending;
      const take = Math.min(rest.length, Math.max(1, this.wanted(p) - p.length));
      const joined = Buffer.concat([p, rest.subarray(0, take)]);
      rest = rest.subarray(take);
      this.pending = undefined;
      const used = this.parse(joined);
      if (used < joined.length) this.pending = joined.subarray(used);
    }
    if (rest.length === 0) return;
    let buf = rest;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    const used = this.parse(buf);
    if (used < buf.length) {
      // Keep the unparsed tail: a copy, so the caller may reuse its chunk buffer.
      this.pending = Buffer.from(buf.subarray(used));
    }
  }

  /** Bytes the first record of `p` takes, as far as its header tells (Infinity: let `parse` judge it whole). */
  private wanted(p: Buffer): number {
    if (this.fmt === 'pcap') {
      if (p.length < 16) return 16;
      const capLen = this.u32(p, 8);
      return capLen > Math.max(MAX_RECORD, this.snapLen) ? Infinity : 16 + capLen;
    }
    if (p.length < 12) return 12;
    let le = this.le;
    if (u32be(p, 0) === PCAPNG_SHB) {
      const bom = p.readUInt32LE(8);
      if (bom === PCAPNG_BOM) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else return Infinity;
    }
    const len = le ? u32le(p, 4) : u32be(p, 4);
    return len < 12 || len % 4 !== 0 || len > MAX_BLOCK ? Infinity : len;
  }

  /** Signals the end of input; throws if it ended inside a header or record. */
  end(): void {
    if (!this.fmt) {
      const n = this.pending?.length ?? 0;
      throw new CaptureFormatError(
        'unknown-format',
        n === 0 ? 'empty input: not a pcap or pcapng capture' : `input too short (${n} bytes) to be a pcap or pcapng capture`,
        0,
        0,
      );
    }
    if (this.pending && this.pending.length > 0) {
      throw new CaptureFormatError(
        'truncated',
        `capture ends in the middle of a ${this.fmt === 'pcap' ? 'packet record' : 'block'} (${this.pending.length} bytes left over)`,
        this.bytesRead,
        this.packets,
      );
    }
  }

  private parse(buf: Buffer): number {
    let off = 0;
    if (!this.fmt) {
      if (buf.length < 4) return 0;
      const be = buf.readUInt32BE(0);
      const le = buf.readUInt32LE(0);
      if (be === PCAPNG_SHB) {
        this.fmt = 'pcapng';
      } else if (le === PCAP_MAGIC_USEC || le === PCAP_MAGIC_NSEC || be === PCAP_MAGIC_USEC || be === PCAP_MAGIC_NSEC) {
        if (buf.length < 24) return 0;
        this.fmt = 'pcap';
        this.le = le === PCAP_MAGIC_USEC || le === PCAP_MAGIC_NSEC;
        this.nsec = (this.le ? le : be) === PCAP_MAGIC_NSEC;
        const major = this.u16(buf, 4);
        if (major !== 2) {
          throw new CaptureFormatError('unsupported-version', `pcap version ${major}.${this.u16(buf, 6)} is not supported (expected 2.4)`, 4, 0);
        }
        this.snapLen = this.u32(buf, 16);
        // The upper bits of the link-type field carry FCS information; the type is the low 16.
        this.linkType = this.u32(buf, 20) & 0xffff;
        off = 24;
        this.bytesRead = 24;
      } else {
        throw new CaptureFormatError(
          'unknown-format',
          `not a pcap or pcapng capture (magic 0x${be.toString(16).padStart(8, '0')})`,
          0,
          0,
        );
      }
    }
    return this.fmt === 'pcap' ? this.parsePcap(buf, off) : this.parsePcapng(buf, off);
  }

  private u16(buf: Buffer, off: number): number {
    return this.le ? u16le(buf, off) : u16be(buf, off);
  }

  private u32(buf: Buffer, off: number): number {
    return this.le ? u32le(buf, off) : u32be(buf, off);
  }

  private parsePcap(buf: Buffer, start: number): number {
    let off = start;
    const pkt = this.pkt;
    const limit = Math.max(MAX_RECORD, this.snapLen);
    const le = this.le;
    while (off + 16 <= buf.length) {
      const tsSec = le ? u32le(buf, off) : u32be(buf, off);
      const tsFrac = le ? u32le(buf, off + 4) : u32be(buf, off + 4);
      const capLen = le ? u32le(buf, off + 8) : u32be(buf, off + 8);
      const origLen = le ? u32le(buf, off + 12) : u32be(buf, off + 12);
      if (capLen > limit) {
        throw new CaptureFormatError(
          'bad-record-length',
          `packet record claims ${capLen} captured bytes, more than the limit of ${limit}: the capture is corrupt`,
          this.bytesRead,
          this.packets,
        );
      }
      if (off + 16 + capLen > buf.length) break;
      pkt.buf = buf;
      pkt.offset = off + 16;
      pkt.capLen = capLen;
      pkt.origLen = origLen;
      pkt.tsSec = tsSec;
      pkt.tsNsec = this.nsec ? tsFrac : tsFrac * 1000;
      pkt.linkType = this.linkType;
      pkt.interfaceId = 0;
      pkt.frame = ++this.packets;
      off += 16 + capLen;
      this.bytesRead += 16 + capLen;
      this.onPacket(pkt);
    }
    return off;
  }

  private parsePcapng(buf: Buffer, start: number): number {
    let off = start;
    while (off + 12 <= buf.length) {
      // The section header block type reads the same in both byte orders; its byte-order
      // magic decides how everything in the section is read.
      if (u32be(buf, off) === PCAPNG_SHB) {
        const bom = buf.readUInt32LE(off + 8);
        if (bom === PCAPNG_BOM) this.le = true;
        else if (bom === 0x4d3c2b1a) this.le = false;
        else throw new CaptureFormatError('bad-block', `section header has an invalid byte-order magic 0x${bom.toString(16)}`, this.bytesRead, this.packets);
      } else if (!this.sawSection) {
        throw new CaptureFormatError('bad-block', 'pcapng capture does not start with a section header block', this.bytesRead, this.packets);
      }
      const type = this.u32(buf, off);
      const len = this.u32(buf, off + 4);
      if (len < 12 || len % 4 !== 0 || len > MAX_BLOCK) {
        throw new CaptureFormatError('bad-block-length', `block of type 0x${type.toString(16)} has an invalid length ${len}`, this.bytesRead, this.packets);
      }
      if (off + len > buf.length) break;
      const trailer = this.u32(buf, off + len - 4);
      if (trailer !== len) {
        throw new CaptureFormatError(
          'bad-block-length',
          `block of type 0x${type.toString(16)} has mismatched lengths (${len} at the start, ${trailer} at the end)`,
          this.bytesRead,
          this.packets,
        );
      }
      this.block(buf, off, type, len);
      off += len;
      this.bytesRead += len;
    }
    return off;
  }

  private block(buf: Buffer, off: number, type: number, len: number): void {
    const body = off + 8;
    const bodyEnd = off + len - 4;
    switch (type) {
      case PCAPNG_SHB: {
        const major = this.u16(buf, body + 4);
        if (major !== 1) {
          throw new CaptureFormatError('unsupported-version', `pcapng version ${major} is not supported (expected 1.0)`, this.bytesRead, this.packets);
        }
        this.sawSection = true;
        this.interfaces = [];
        return;
      }
      case 1: // Interface Description Block
        this.interfaces.push(this.readInterface(buf, body, bodyEnd));
        return;
      case 6: // Enhanced Packet Block: 32-bit interface id
        this.packetBlock(buf, body, bodyEnd, 'enhanced packet', false, len);
        return;
      case 2: // Obsolete Packet Block: 16-bit interface id and drop count, otherwise the same
        this.packetBlock(buf, body, bodyEnd, 'packet', true, len);
        return;
      case 3: {
        // Simple Packet Block: interface 0, no timestamp; captured length is implied.
        if (bodyEnd - body < 4) throw this.shortBlock('simple packet', len);
        const iface = this.iface(0);
        const origLen = this.u32(buf, body);
        let capLen = Math.min(origLen, bodyEnd - body - 4);
        if (iface.snapLen > 0) capLen = Math.min(capLen, iface.snapLen);
        this.emitWithTime(buf, body + 4, capLen, origLen, 0, iface, 0, 0);
        return;
      }
      default:
        // Name resolution, statistics, decryption secrets, custom blocks: not packets.
        return;
    }
  }

  /** Enhanced or obsolete packet block: interface, timestamp, lengths, then the packet. */
  private packetBlock(buf: Buffer, body: number, bodyEnd: number, what: string, shortIfId: boolean, len: number): void {
    if (bodyEnd - body < 20) throw this.shortBlock(what, len);
    const ifId = shortIfId ? this.u16(buf, body) : this.u32(buf, body);
    const capLen = this.u32(buf, body + 12);
    const origLen = this.u32(buf, body + 16);
    if (body + 20 + capLen > bodyEnd) {
      throw new CaptureFormatError('bad-block', `${what} block claims ${capLen} captured bytes but holds only ${bodyEnd - body - 20}`, this.bytesRead, this.packets);
    }
    this.emitWithTime(buf, body + 20, capLen, origLen, ifId, this.iface(ifId), this.u32(buf, body + 4), this.u32(buf, body + 8));
  }

  private shortBlock(what: string, len: number): CaptureFormatError {
    return new CaptureFormatError('bad-block', `${what} block is too short (${len} bytes)`, this.bytesRead, this.packets);
  }

  private iface(id: number): PcapngInterface {
    const iface = this.interfaces[id];
    if (!iface) {
      throw new CaptureFormatError(
        'unknown-interface',
        `packet refers to interface ${id} but the section describes ${this.interfaces.length}`,
        this.bytesRead,
        this.packets,
      );
    }
    return iface;
  }

  private readInterface(buf: Buffer, body: number, bodyEnd: number): PcapngInterface {
    if (bodyEnd - body < 8) throw this.shortBlock('interface description', bodyEnd - body + 12);
    const iface: PcapngInterface = {
      linkType: this.u16(buf, body),
      snapLen: this.u32(buf, body + 4),
      unitsPerSecond: 1e6,
      nsPerUnit: 1000,
      offsetSec: 0,
    };
    let o = body + 8;
    while (o + 4 <= bodyEnd) {
      const code = this.u16(buf, o);
      const olen = this.u16(buf, o + 2);
      if (code === 0) break; // opt_endofopt
      if (o + 4 + olen > bodyEnd) break;
      if (code === 9 && olen >= 1) {
        // if_tsresol: high bit clear = 10^-v, set = 2^-v
        const v = buf[o + 4]!;
        if (v & 0x80) {
          iface.unitsPerSecond = 2 ** (v & 0x7f);
          iface.nsPerUnit = 0;
        } else {
          iface.unitsPerSecond = 10 ** v;
          iface.nsPerUnit = v <= 9 ? 10 ** (9 - v) : 0;
        }
      } else if (code === 14 && olen >= 8) {
        // if_tsoffset: seconds added to every timestamp of the interface
        const hi = this.le ? buf.readInt32LE(o + 8) : buf.readInt32BE(o + 4);
        const lo = this.le ? buf.readUInt32LE(o + 4) : buf.readUInt32BE(o + 8);
        iface.offsetSec = hi * 4294967296 + lo;
      }
      o += 4 + ((olen + 3) & ~3);
    }
    return iface;
  }

  private emitWithTime(
    buf: Buffer,
    dataOff: number,
    capLen: number,
    origLen: number,
    ifId: number,
    iface: PcapngInterface,
    tsHigh: number,
    tsLow: number,
  ): void {
    const pkt = this.pkt;
    const units = iface.unitsPerSecond;
    let sec: number;
    let frac: number;
    // tsHigh * 2^32 is exact in a double; adding tsLow stays exact below 2^53, which covers
    // microsecond timestamps until the year 2255. Finer units take the BigInt path.
    if (tsHigh < 0x200000) {
      const v = tsHigh * 4294967296 + tsLow;
      sec = Math.floor(v / units);
      frac = v - sec * units;
    } else {
      const v = (BigInt(tsHigh) << 32n) | BigInt(tsLow);
      const u = BigInt(units);
      sec = Number(v / u);
      frac = Number(v % u);
    }
    pkt.buf = buf;
    pkt.offset = dataOff;
    pkt.capLen = capLen;
    pkt.origLen = origLen;
    pkt.tsSec = sec + iface.offsetSec;
    pkt.tsNsec = iface.nsPerUnit > 0 ? frac * iface.nsPerUnit : Math.floor((frac * 1e9) / units);
    pkt.linkType = iface.linkType;
    pkt.interfaceId = ifId;
    pkt.frame = ++this.packets;
    this.onPacket(pkt);
  }
}
