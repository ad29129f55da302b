/**
 * Writers for pcapng and classic pcap. Packets are written byte for byte with nanosecond
 * timestamps (pcapng: if_tsresol 9; pcap: the nanosecond magic), so what the worker stores and
 * exports is exactly what it captured. Little-endian, as every reader expects.
 */

const SHB = 0x0a0d0d0a;
const IDB = 1;
const EPB = 6;
const BOM = 0x1a2b3c4d;

const pad4 = (n: number): number => (n + 3) & ~3;

/** Splits sec * 1e9 + nsec into the high and low 32-bit words without losing precision. */
export function nanosToWords(sec: number, nsec: number): [number, number] {
  // 1e9 * sec exceeds 2^53 for current dates, so work in 16-bit limbs: each product stays exact.
  const sh = Math.floor(sec / 65536);
  const sl = sec - sh * 65536;
  const a = sh * 1e9; // contributes a * 65536
  const b = sl * 1e9 + nsec;
  const bh = Math.floor(b / 65536);
  const bl = b - bh * 65536;
  const c = a + bh; // value = c * 65536 + bl
  const hi = Math.floor(c / 65536);
  const lo = (c - hi * 65536) * 65536 + bl;
  return [hi, lo];
}

/** Section header block, optionally naming the writing application (shb_userappl). */
export function pcapngSectionHeader(application?: string): Buffer {
  const opt = application ? Buffer.from(application, 'utf8') : undefined;
  const optLen = opt ? 4 + pad4(opt.length) + 4 : 0;
  const len = 28 + optLen;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(SHB, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt32LE(BOM, 8);
  b.writeUInt16LE(1, 12);
  b.writeUInt16LE(0, 14);
  b.writeInt32LE(-1, 16); // section length unknown
  b.writeInt32LE(-1, 20);
  if (opt) {
    b.writeUInt16LE(4, 24); // shb_userappl
    b.writeUInt16LE(opt.length, 26);
    opt.copy(b, 28);
    // opt_endofopt is the zeroed 4 bytes that follow
  }
  b.writeUInt32LE(len, len - 4);
  return b;
}

/** Interface description block with nanosecond timestamps. */
export function pcapngInterface(linkType: number, snapLen = 0): Buffer {
  const len = 20 + 8 + 4 + 4; // header + if_tsresol option (4 + 1 padded to 4) + endofopt + trailer
  const b = Buffer.alloc(len);
  b.writeUInt32LE(IDB, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt16LE(linkType, 8);
  b.writeUInt32LE(snapLen, 12);
  b.writeUInt16LE(9, 16); // if_tsresol
  b.writeUInt16LE(1, 18);
  b[20] = 9; // 10^-9
  b.writeUInt32LE(len, len - 4);
  return b;
}

/** Bytes an enhanced packet block takes for `capLen` bytes of packet. */
export const pcapngPacketSize = (capLen: number): number => 32 + pad4(capLen);

/**
 * Writes an enhanced packet block into `out` at `at` and returns the offset after it.
 * `data` is copied as is; no allocation.
 */
export function writePcapngPacket(
  out: Buffer,
  at: number,
  interfaceId: number,
  tsSec: number,
  tsNsec: number,
  data: Uint8Array,
  origLen: number,
): number {
  const capLen = data.length;
  const len = pcapngPacketSize(capLen);
  const [hi, lo] = nanosToWords(tsSec, tsNsec);
  out.writeUInt32LE(EPB, at);
  out.writeUInt32LE(len, at + 4);
  out.writeUInt32LE(interfaceId, at + 8);
  out.writeUInt32LE(hi, at + 12);
  out.writeUInt32LE(lo, at + 16);
  out.writeUInt32LE(capLen, at + 20);
  out.writeUInt32LE(origLen, at + 24);
  out.set(data, at + 28);
  out.fill(0, at + 28 + capLen, at + len - 4);
  out.writeUInt32LE(len, at + len - 4);
  return at + len;
}

/** Classic pcap file header, nanosecond variant. */
export function pcapHeader(linkType: number, snapLen = 262144): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0xa1b23c4d, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  b.writeUInt32LE(snapLen, 16);
  b.writeUInt32LE(linkType, 20);
  return b;
}

export const pcapPacketSize = (capLen: number): number => 16 + capLen;

/** Writes a classic pcap record (nanosecond timestamps) into `out`; returns the next offset. */
export function writePcapPacket(out: Buffer, at: number, tsSec: number, tsNsec: number, data: Uint8Array, origLen: number): number {
  out.writeUInt32LE(tsSec, at);
  out.writeUInt32LE(tsNsec, at + 4);
  out.writeUInt32LE(data.length, at + 8);
  out.writeUInt32LE(origLen, at + 12);
  out.set(data, at + 16);
  return at + 16 + data.length;
}
