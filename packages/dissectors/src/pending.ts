/**
 * The unconsumed bytes of one direction of a stream, `[pos, end)` of `buf`. Between calls the
 * buffer is the dissector's own; during `onData` it may be the caller's chunk, parsed in place,
 * which is valid only during that call.
 */
export interface PendingBytes {
  buf: Buffer;
  pos: number;
  end: number;
}

export const NO_BYTES: Buffer = Buffer.alloc(0);

/** Adds bytes after the unconsumed ones (which must be the dissector's own). */
export function appendBytes(p: PendingBytes, src: Buffer, start: number, length: number): void {
  const have = p.end - p.pos;
  if (p.end + length > p.buf.length) {
    // Room for twice what is held: a message arriving in many small segments is copied O(n) times, not O(n^2).
    const grown = Buffer.allocUnsafe(Math.max(have + length, 2 * have));
    p.buf.copy(grown, 0, p.pos, p.end);
    p.buf = grown;
    p.pos = 0;
    p.end = have;
  }
  src.copy(p.buf, p.end, start, start + length);
  p.end += length;
}

/** Takes a chunk's bytes: parsed in place when nothing is pending, else appended to what is. */
export function takeBytes(p: PendingBytes, src: Buffer, start: number, length: number): void {
  if (p.pos === p.end) {
    p.buf = src;
    p.pos = start;
    p.end = start + length;
  } else appendBytes(p, src, start, length);
}

/**
 * After a chunk parsed in place: the bytes left of it are copied out of the caller's buffer.
 * False when none are left (the caller then resets its pending state).
 */
export function ownRest(p: PendingBytes): boolean {
  if (p.pos >= p.end) return false;
  const n = p.end - p.pos;
  const own = Buffer.allocUnsafe(n);
  p.buf.copy(own, 0, p.pos, p.end);
  p.buf = own;
  p.pos = 0;
  p.end = n;
  return true;
}
