/**
 * Bytes a dissector holds back until it can judge them: the first bytes of a direction whose
 * framing or role is not known yet (joined mid-stream, no handshake). A chunk is valid only
 * during the call and may be one byte of a segment, so a judgement made on "the first chunk"
 * would depend on how the stream was cut; holding the bytes (copied, with the capture time of
 * each run) lets the judgement wait for as many bytes as the content says it needs, and
 * replaying them gives every message the time it would have had without the wait.
 */
export class HeldBytes {
  private buf = new Uint8Array(0);
  private used = 0;
  /** Per run of bytes with one capture time: start offset, sec, nsec. */
  private readonly runs: number[] = [];

  get length(): number {
    return this.used;
  }

  /** The bytes held so far, contiguous. A view: valid until the next `add`. */
  get bytes(): Uint8Array {
    return this.buf.subarray(0, this.used);
  }

  /** Copies `src[from, to)`, sent at capture time `sec.nsec`. */
  add(src: Uint8Array, from: number, to: number, sec: number, nsec: number): void {
    const n = to - from;
    if (n <= 0) return;
    if (this.used + n > this.buf.length) {
      // Doubling: bytes arriving one at a time cost amortised O(1) each.
      const grown = new Uint8Array(Math.max(64, 2 * this.buf.length, this.used + n));
      grown.set(this.buf.subarray(0, this.used));
      this.buf = grown;
    }
    const last = this.runs.length - 3;
    if (last < 0 || this.runs[last + 1] !== sec || this.runs[last + 2] !== nsec) this.runs.push(this.used, sec, nsec);
    this.buf.set(src.subarray(from, to), this.used);
    this.used += n;
  }

  /** Hands the held bytes back run by run, in order, with their times. */
  replay(fn: (buf: Uint8Array, from: number, to: number, sec: number, nsec: number) => void): void {
    for (let i = 0; i < this.runs.length; i += 3) {
      const end = i + 3 < this.runs.length ? this.runs[i + 3]! : this.used;
      fn(this.buf, this.runs[i]!, end, this.runs[i + 1]!, this.runs[i + 2]!);
    }
  }
}
