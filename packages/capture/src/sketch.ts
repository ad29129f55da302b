/**
 * A mergeable quantile sketch with a relative-error guarantee, for TCP handshake RTTs in
 * microseconds. It follows DDSketch (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable
 * quantile sketch with relative-error guarantees", VLDB 2019), written from the paper.
 *
 * Why: percentiles cannot be averaged. Each worker keeps a sketch per group of flows and ships it
 * as bytes; the hub merges the sketches, and the merged sketch answers exactly as one sketch fed
 * every value would (bucket for bucket), in any merge order.
 *
 * How: with gamma = (1 + a) / (1 - a) for relative accuracy a, a value x >= MIN_INDEXABLE_US
 * counts in bucket i = ceil(log_gamma(x)), which covers (gamma^(i-1), gamma^i]. Every value in a
 * bucket is within relative error a of the bucket's representative 2 gamma^i / (gamma + 1), so the
 * representative of the bucket holding the rank-r value is within a of that value. Values below
 * MIN_INDEXABLE_US (one nanosecond, the finest capture resolution, so in practice only 0) count in
 * a separate zero bucket.
 *
 * Buckets live in one Float64Array covering a contiguous index range that grows geometrically;
 * `add` allocates nothing once the range covers the values seen. The range is capped
 * (`maxBuckets`): when values span more buckets than that, the lowest buckets are folded into
 * the lowest kept one, so memory stays bounded whatever the input, at the cost of the low
 * quantiles (see `quantile`).
 */

/** Values below this (microseconds) are counted in the zero bucket. Part of encoding version 1. */
export const MIN_INDEXABLE_US = 1e-3;
/** 1%: p50/p90/p99 within 1% of the exact value. */
export const DEFAULT_RELATIVE_ACCURACY = 0.01;
/** At 1%, 2048 buckets keep the guarantee over a factor of about 6e17 below the max (16 KiB). */
export const DEFAULT_MAX_BUCKETS = 2048;
/** Smallest accepted accuracy: keeps every bucket index of a finite double inside int32. */
export const MIN_RELATIVE_ACCURACY = 1e-6;
/** Largest accepted bucket cap: bounds what a decoded sketch may allocate (512 KiB). */
export const MAX_MAX_BUCKETS = 65536;
/** First byte of every encoding. */
export const SKETCH_ENCODING_VERSION = 1;

/** Stable codes for sketch errors, so callers can tell them apart without parsing messages. */
export type SketchErrorCode = 'truncated' | 'unsupported-version' | 'corrupt' | 'incompatible';

/** Undecodable bytes, or a merge of sketches with different bucket mappings. */
export class SketchError extends Error {
  override readonly name = 'SketchError';
  constructor(
    readonly code: SketchErrorCode,
    message: string,
  ) {
    super(message);
  }
}

// Sentinels for "no bucket occupied": any index compares below EMPTY_LO and above EMPTY_HI, so
// the first insertion sets both bounds without a branch of its own.
const EMPTY_LO = 0x7fffffff;
const EMPTY_HI = -0x80000000;
const INITIAL_CAPACITY = 64;
const NO_BUCKETS = new Float64Array(0);
// Bound once for the per-value paths: inside a vm context (jest's test environment) each lookup
// of a global such as `Math` goes through the context's interceptor, which made `add` 20x slower.
const { log, ceil, floor } = Math;
const { isSafeInteger, MAX_VALUE: MAX_DOUBLE } = Number;

/** A DDSketch-style quantile sketch over non-negative values (microseconds). */
export class RttSketch {
  readonly relativeAccuracy: number;
  readonly maxBuckets: number;
  private readonly lnGamma: number;
  private readonly invLnGamma: number;
  /** Bucket indices of MIN_INDEXABLE_US and of the largest double: the only legal range. */
  private readonly minIndex: number;
  private readonly maxIndex: number;
  /** counts[k] is the count of bucket offset + k. Its length never exceeds maxBuckets. */
  private counts: Float64Array = NO_BUCKETS;
  private offset = 0;
  /** Lowest and highest occupied bucket; both have a non-zero count unless the store is empty. */
  private lo = EMPTY_LO;
  private hi = EMPTY_HI;
  private n = 0;
  private zero = 0;
  private lowest = Infinity;
  private highest = -Infinity;
  private total = 0;

  /**
   * @param relativeAccuracy quantiles are within this relative error of the exact value
   *   (in [1e-6, 1)); sketches merge only with sketches of the same accuracy.
   * @param maxBuckets cap on the bucket index range kept in memory (1..65536); 8 bytes each.
   */
  constructor(relativeAccuracy = DEFAULT_RELATIVE_ACCURACY, maxBuckets = DEFAULT_MAX_BUCKETS) {
    if (typeof relativeAccuracy !== 'number' || !(relativeAccuracy >= MIN_RELATIVE_ACCURACY && relativeAccuracy < 1)) {
      throw new RangeError(`relative accuracy must be in [${MIN_RELATIVE_ACCURACY}, 1), got ${String(relativeAccuracy)}`);
    }
    if (!Number.isInteger(maxBuckets) || maxBuckets < 1 || maxBuckets > MAX_MAX_BUCKETS) {
      throw new RangeError(`maxBuckets must be an integer in [1, ${MAX_MAX_BUCKETS}], got ${String(maxBuckets)}`);
    }
    this.relativeAccuracy = relativeAccuracy;
    this.maxBuckets = maxBuckets;
    // log1p keeps ln(gamma) precise when the accuracy is small.
    this.lnGamma = Math.log1p((2 * relativeAccuracy) / (1 - relativeAccuracy));
    this.invLnGamma = 1 / this.lnGamma;
    this.minIndex = this.indexOf(MIN_INDEXABLE_US);
    this.maxIndex = this.indexOf(MAX_DOUBLE);
  }

  /** Number of values added (including merged ones). */
  get count(): number {
    return this.n;
  }

  /** Exact smallest value added; undefined when empty. */
  get min(): number | undefined {
    return this.n === 0 ? undefined : this.lowest;
  }

  /** Exact largest value added; undefined when empty. */
  get max(): number | undefined {
    return this.n === 0 ? undefined : this.highest;
  }

  /** Sum of the values added. Floating point: merge order can change the last bits. */
  get sum(): number {
    return this.total;
  }

  /** Values below MIN_INDEXABLE_US. */
  get zeroCount(): number {
    return this.zero;
  }

  /** Bytes held by the bucket store (at most 8 * maxBuckets). */
  get storageBytes(): number {
    return this.counts.byteLength;
  }

  /**
   * Counts `count` occurrences of `valueUs`. Throws a RangeError for NaN, negative or infinite
   * values and for a count that is not a non-negative safe integer. Allocates nothing unless
   * the value falls outside the bucket range already held.
   */
  add(valueUs: number, count = 1): void {
    if (!(valueUs >= 0 && valueUs <= MAX_DOUBLE)) {
      throw new RangeError(`sketch values must be finite and >= 0, got ${String(valueUs)}`);
    }
    if (count !== 1) {
      if (!Number.isSafeInteger(count) || count < 0) {
        throw new RangeError(`count must be a non-negative safe integer, got ${String(count)}`);
      }
      if (count === 0) return;
    }
    const v = valueUs + 0; // folds -0 into +0 so min/max and the encoding stay canonical
    if (v < MIN_INDEXABLE_US) {
      this.zero += count;
    } else {
      const i = ceil(log(v) * this.invLnGamma);
      const k = i - this.offset;
      // Storage never exceeds maxBuckets, so an index inside it cannot break the cap.
      if (k >= 0 && k < this.counts.length) {
        this.counts[k]! += count;
        if (i < this.lo) this.lo = i;
        if (i > this.hi) this.hi = i;
      } else {
        this.addOutside(i, count);
      }
    }
    this.n += count;
    this.total += v * count;
    if (v < this.lowest) this.lowest = v;
    if (v > this.highest) this.highest = v;
  }

  /**
   * Adds every value counted by `other` into this sketch. Both must have the same relative
   * accuracy (else a SketchError 'incompatible'); the result keeps this sketch's bucket cap.
   * With equal caps the result equals, bucket for bucket, a sketch fed all values of both.
   */
  merge(other: RttSketch): this {
    if (other.relativeAccuracy !== this.relativeAccuracy) {
      throw new SketchError(
        'incompatible',
        `cannot merge a sketch of relative accuracy ${other.relativeAccuracy} into one of ${this.relativeAccuracy}: their buckets differ`,
      );
    }
    if (other.n === 0) return this;
    const src = other === this ? this.clone() : other;
    if (src.hi >= src.lo) {
      const keep = this.reserve(Math.min(this.lo, src.lo), Math.max(this.hi, src.hi));
      const counts = this.counts;
      for (let j = src.lo; j <= src.hi; j++) {
        const c = src.counts[j - src.offset]!;
        if (c !== 0) counts[(j < keep ? keep : j) - this.offset]! += c;
      }
      const lo = src.lo < keep ? keep : src.lo;
      if (lo < this.lo) this.lo = lo;
      if (src.hi > this.hi) this.hi = src.hi;
    }
    this.zero += src.zero;
    this.n += src.n;
    this.total += src.total;
    if (src.lowest < this.lowest) this.lowest = src.lowest;
    if (src.highest > this.highest) this.highest = src.highest;
    return this;
  }

  /**
   * The value at rank r = max(1, ceil(q * count)) (1-based) of the values added, i.e. the
   * nearest-rank percentile `percentilesNs` computes exactly (same expression, so the same
   * floating-point rounding of q * count): the result is within `relativeAccuracy` of it.
   * q = 0 and q = 1 give the exact min and max, and every result is clamped into [min, max].
   * Undefined when the sketch is empty; RangeError for q outside [0, 1].
   *
   * Limits: a rank falling in the zero bucket returns the exact min (values there are below
   * one nanosecond, so the error is under MIN_INDEXABLE_US absolute). Once values have spanned
   * more than `maxBuckets` buckets, the lowest buckets are folded upward: a rank whose value was
   * folded loses the guarantee and is overestimated (never underestimated). Ranks in the kept
   * top `maxBuckets` buckets keep it; those span a ratio of gamma^maxBuckets below the max,
   * about 6e17 at the defaults but only about 60 at accuracy 0.001, so a finer accuracy needs a
   * larger cap.
   */
  quantile(q: number): number | undefined {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in [0, 1], got ${String(q)}`);
    if (this.n === 0) return undefined;
    if (q === 0) return this.lowest;
    if (q === 1) return this.highest;
    const rank = Math.max(1, Math.ceil(q * this.n));
    if (rank <= this.zero) return this.lowest;
    let seen = this.zero;
    for (let j = this.lo; j <= this.hi; j++) {
      seen += this.counts[j - this.offset]!;
      if (seen >= rank) {
        const v = Math.exp(j * this.lnGamma) * (1 - this.relativeAccuracy);
        return v < this.lowest ? this.lowest : v > this.highest ? this.highest : v;
      }
    }
    return this.highest; // not reached: the counts add up to n
  }

  /** Occupied buckets as [index, count], lowest index first. Allocates; for tests and diagnostics. */
  buckets(): Array<[index: number, count: number]> {
    const out: Array<[number, number]> = [];
    for (let j = this.lo; j <= this.hi; j++) {
      const c = this.counts[j - this.offset]!;
      if (c !== 0) out.push([j, c]);
    }
    return out;
  }

  /** An independent copy. */
  clone(): RttSketch {
    const s = new RttSketch(this.relativeAccuracy, this.maxBuckets);
    s.counts = this.counts.slice();
    s.offset = this.offset;
    s.lo = this.lo;
    s.hi = this.hi;
    s.n = this.n;
    s.zero = this.zero;
    s.lowest = this.lowest;
    s.highest = this.highest;
    s.total = this.total;
    return s;
  }

  /**
   * Encodes the sketch (format version 1, little-endian; varints are unsigned LEB128, at most
   * 8 bytes, minimal length):
   *
   *   u8 version = 1 | f64 relativeAccuracy | varint maxBuckets | varint count
   *   then, only when count > 0:
   *   f64 min | f64 max | f64 sum | varint zeroCount | varint B (occupied buckets)
   *   | B x (varint indexDelta, varint bucketCount)
   *
   * Buckets are listed by increasing index. The first delta is the index itself, zigzag-encoded
   * (indices of values below 1 us are negative); later deltas are from the previous index (>= 1).
   */
  toBytes(): Uint8Array {
    if (this.n === 0) {
      const out = new Uint8Array(1 + 8 + 3 + 1);
      const dv = new DataView(out.buffer);
      out[0] = SKETCH_ENCODING_VERSION;
      dv.setFloat64(1, this.relativeAccuracy, true);
      let p = writeVarint(out, 9, this.maxBuckets);
      p = writeVarint(out, p, 0);
      return out.slice(0, p);
    }
    let occupied = 0;
    for (let j = this.lo; j <= this.hi; j++) if (this.counts[j - this.offset] !== 0) occupied++;
    // Fixed fields, at most 3 bytes of cap, 8 per safe-integer varint, 5 per zigzag int32 index.
    const out = new Uint8Array(1 + 8 + 3 + 8 + 24 + 8 + 8 + occupied * (5 + 8));
    const dv = new DataView(out.buffer);
    out[0] = SKETCH_ENCODING_VERSION;
    dv.setFloat64(1, this.relativeAccuracy, true);
    let p = writeVarint(out, 9, this.maxBuckets);
    p = writeVarint(out, p, this.n);
    dv.setFloat64(p, this.lowest, true);
    dv.setFloat64(p + 8, this.highest, true);
    dv.setFloat64(p + 16, this.total, true);
    p = writeVarint(out, p + 24, this.zero);
    p = writeVarint(out, p, occupied);
    let prev = 0;
    let first = true;
    for (let j = this.lo; j <= this.hi; j++) {
      const c = this.counts[j - this.offset]!;
      if (c === 0) continue;
      p = writeVarint(out, p, first ? zigzag(j) : j - prev);
      p = writeVarint(out, p, c);
      prev = j;
      first = false;
    }
    return out.slice(0, p);
  }

  /**
   * Decodes `toBytes` output. Every field is checked (version, accuracy and cap ranges, counts
   * adding up, indices increasing, in range and within the cap, min/max consistent with the
   * buckets, no trailing bytes); anything else throws a SketchError ('truncated',
   * 'unsupported-version' or 'corrupt'). Work and memory are bounded by the input length and
   * the cap.
   */
  static fromBytes(bytes: Uint8Array): RttSketch {
    const r = new Reader(bytes);
    const version = r.u8('version');
    if (version !== SKETCH_ENCODING_VERSION) {
      throw new SketchError('unsupported-version', `sketch encoding version ${version} is not supported (expected ${SKETCH_ENCODING_VERSION})`);
    }
    const accuracy = r.f64('relative accuracy');
    if (!(accuracy >= MIN_RELATIVE_ACCURACY && accuracy < 1)) corrupt(`relative accuracy ${accuracy} is out of range`);
    const cap = r.varint('maxBuckets');
    if (cap < 1 || cap > MAX_MAX_BUCKETS) corrupt(`maxBuckets ${cap} is out of range`);
    const s = new RttSketch(accuracy, cap);
    const n = r.varint('count');
    if (n === 0) {
      r.end();
      return s;
    }
    const min = r.f64('min');
    const max = r.f64('max');
    const sum = r.f64('sum');
    if (!(min >= 0 && min <= max && max <= MAX_DOUBLE) || Object.is(min, -0) || Object.is(max, -0)) {
      corrupt(`min ${min} and max ${max} are not 0 <= min <= max < Infinity`);
    }
    // Adding non-negative doubles never rounds below an operand, so the sum is at least the max.
    if (!(sum >= max) || Object.is(sum, -0)) corrupt(`sum ${sum} is below max ${max}`);
    const zero = r.varint('zero count');
    if (zero > n) corrupt(`zero count ${zero} exceeds count ${n}`);
    if ((zero > 0) !== (min < MIN_INDEXABLE_US)) corrupt(`zero count ${zero} disagrees with min ${min}`);
    const occupied = r.varint('bucket count');
    if (occupied > cap) corrupt(`${occupied} buckets exceed the cap of ${cap}`);
    // Each bucket takes at least two bytes: refuse before allocating for buckets that are not there.
    if (occupied * 2 > r.remaining) {
      throw new SketchError('truncated', `truncated sketch: ${occupied} buckets need at least ${occupied * 2} bytes, ${r.remaining} left`);
    }
    if (occupied === 0) {
      if (zero !== n) corrupt(`count ${n} but only ${zero} values counted`);
      if (max >= MIN_INDEXABLE_US) corrupt(`max ${max} but no bucket holds it`);
      r.end();
      s.n = n;
      s.zero = zero;
      s.lowest = min;
      s.highest = max;
      s.total = sum;
      return s;
    }
    // Indices and counts go to scratch arrays first: the store's extent is known only at the end.
    const idx = new Int32Array(occupied);
    const cnt = new Float64Array(occupied);
    let total = zero;
    let prev = 0;
    for (let b = 0; b < occupied; b++) {
      const d = r.varint('bucket index');
      let i: number;
      if (b === 0) {
        i = unzigzag(d);
        if (i < s.minIndex || i > s.maxIndex) corrupt(`bucket index ${i} is outside [${s.minIndex}, ${s.maxIndex}]`);
      } else {
        if (d === 0) corrupt('bucket indices are not increasing');
        i = prev + d;
        if (i > s.maxIndex) corrupt(`bucket index ${i} is above ${s.maxIndex}`);
        if (i - idx[0]! + 1 > cap) corrupt(`buckets span more than the cap of ${cap}`);
      }
      const c = r.varint('bucket count');
      if (c === 0) corrupt(`bucket ${i} has a zero count`);
      total += c;
      if (!isSafeInteger(total)) corrupt('bucket counts overflow');
      idx[b] = i;
      cnt[b] = c;
      prev = i;
    }
    r.end();
    if (total !== n) corrupt(`count ${n} but the buckets hold ${total}`);
    const first = idx[0]!;
    const last = idx[occupied - 1]!;
    // The max sits in the top bucket, and the min at or below the lowest one (lower once folded).
    // One index of slack: another encoder's logarithm may round a boundary value the other way.
    if (max < MIN_INDEXABLE_US || Math.abs(s.indexOf(max) - last) > 1) corrupt(`max ${max} is not in the top bucket ${last}`);
    if (zero === 0 && s.indexOf(min) > first + 1) corrupt(`min ${min} is above the lowest bucket ${first}`);
    const span = last - first + 1;
    s.counts = new Float64Array(Math.min(cap, Math.max(span, INITIAL_CAPACITY)));
    s.offset = first;
    for (let b = 0; b < occupied; b++) s.counts[idx[b]! - first] = cnt[b]!;
    s.lo = first;
    s.hi = last;
    s.n = n;
    s.zero = zero;
    s.lowest = min;
    s.highest = max;
    s.total = sum;
    return s;
  }

  private indexOf(v: number): number {
    return ceil(log(v) * this.invLnGamma);
  }

  /** Slow path of `add`: grows, shifts or folds the store so bucket i (or the lowest kept) is held. */
  private addOutside(i: number, count: number): void {
    const keep = this.reserve(Math.min(this.lo, i), Math.max(this.hi, i));
    const j = i < keep ? keep : i;
    this.counts[j - this.offset]! += count;
    if (j < this.lo) this.lo = j;
    if (j > this.hi) this.hi = j;
  }

  /**
   * Makes the store hold [lo, hi], a range that contains every occupied bucket. When the range
   * is wider than the cap, buckets below hi - maxBuckets + 1 are folded into that bucket. Returns
   * the lowest index now held: callers count anything below it there. Folding always moves
   * counts to the same floor, so the final buckets depend only on the values, not on the order
   * of adds and merges. Once the cap is reached each new top bucket costs O(maxBuckets), and a
   * sketch can only ever open maxIndex - minIndex of them (about 35,800 at 1%).
   */
  private reserve(lo: number, hi: number): number {
    let carried = 0;
    if (hi - lo + 1 > this.maxBuckets) {
      lo = hi - this.maxBuckets + 1;
      if (this.lo < lo) {
        const end = Math.min(this.hi, lo - 1);
        for (let j = this.lo; j <= end; j++) {
          const k = j - this.offset;
          carried += this.counts[k]!;
          this.counts[k] = 0;
        }
        if (this.hi < lo) {
          this.lo = EMPTY_LO;
          this.hi = EMPTY_HI;
        } else {
          this.lo = lo;
        }
      }
    }
    this.fit(lo, hi);
    if (carried !== 0) {
      this.counts[lo - this.offset]! += carried;
      if (lo < this.lo) this.lo = lo;
      if (lo > this.hi) this.hi = lo;
    }
    return lo;
  }

  /** Positions the store over [lo, hi] (at most maxBuckets wide), keeping the occupied buckets. */
  private fit(lo: number, hi: number): void {
    const len = this.counts.length;
    if (lo >= this.offset && hi < this.offset + len) return;
    const span = hi - lo + 1;
    // Doubling keeps growth amortised O(1) per bucket; the cap bounds it.
    const size = span <= len ? len : Math.min(this.maxBuckets, Math.max(span, 2 * len, INITIAL_CAPACITY));
    const offset = lo - ((size - span) >> 1);
    const occupied = this.hi >= this.lo;
    const from = this.lo - this.offset;
    const width = this.hi - this.lo + 1;
    const to = this.lo - offset;
    if (size === len) {
      if (occupied) {
        this.counts.copyWithin(to, from, from + width);
        this.counts.fill(0, 0, to);
        this.counts.fill(0, to + width);
      }
    } else {
      const next = new Float64Array(size);
      if (occupied) next.set(this.counts.subarray(from, from + width), to);
      this.counts = next;
    }
    this.offset = offset;
  }
}

function corrupt(message: string): never {
  throw new SketchError('corrupt', `corrupt sketch: ${message}`);
}

const zigzag = (i: number): number => (i >= 0 ? 2 * i : -2 * i - 1);
const unzigzag = (z: number): number => (z % 2 === 0 ? z / 2 : -(z + 1) / 2);

/** Unsigned LEB128 of a safe integer, with arithmetic rather than 32-bit shifts. */
function writeVarint(out: Uint8Array, p: number, v: number): number {
  while (v >= 0x80) {
    out[p++] = (v % 0x80) | 0x80;
    v = floor(v / 0x80);
  }
  out[p++] = v;
  return p;
}

/** Bounds-checked reads; every failure names the field being read. */
class Reader {
  private p = 0;
  private readonly dv: DataView;
  constructor(private readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number, field: string): void {
    if (this.p + n > this.bytes.length) {
      throw new SketchError('truncated', `truncated sketch: ${field} needs ${n} bytes at byte ${this.p} of ${this.bytes.length}`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.bytes[this.p++]!;
  }

  f64(field: string): number {
    this.need(8, field);
    const v = this.dv.getFloat64(this.p, true);
    this.p += 8;
    return v;
  }

  /** A minimal varint of at most 8 bytes holding a safe integer. */
  varint(field: string): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      this.need(1, field);
      const b = this.bytes[this.p++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (b === 0 && i > 0) corrupt(`${field} is a padded varint`);
        if (!isSafeInteger(v)) corrupt(`${field} exceeds 2^53`);
        return v;
      }
      scale *= 0x80;
    }
    return corrupt(`${field} is a varint longer than 8 bytes`);
  }

  get remaining(): number {
    return this.bytes.length - this.p;
  }

  end(): void {
    if (this.p !== this.bytes.length) corrupt(`${this.bytes.length - this.p} trailing bytes`);
  }
}
