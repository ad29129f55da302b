import { percentilesNs } from '../src/flow-query';
import { DEFAULT_MAX_BUCKETS, MAX_MAX_BUCKETS, MIN_INDEXABLE_US, RttSketch, SketchError } from '../src/sketch';
import { prng } from '@kubeshark-mcp/testkit';

// Expected values come from sorting the inputs (nearest rank: the value at rank ceil(q * n),
// 1-based) and, for the encoding, from an encoder written here from the documented layout.

function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

const gen = (n: number, seed: number, f: (r: () => number) => number): number[] => {
  const r = prng(seed);
  return Array.from({ length: n }, () => f(r));
};

const logNormal = (medianUs: number, sigma: number) => (r: () => number) => medianUs * Math.exp(sigma * normal(r));
const logUniform = (lo: number, hi: number) => (r: () => number) => Math.exp(Math.log(lo) + r() * (Math.log(hi) - Math.log(lo)));

const DISTRIBUTIONS: Record<string, number[]> = {
  'uniform 1us..1ms': gen(20000, 1, (r) => 1 + r() * 999),
  'log-normal, median 500us': gen(20000, 2, logNormal(500, 1.2)),
  constant: new Array<number>(1000).fill(1234.567),
  'two clusters (LAN and WAN)': gen(10001, 3, (r) => (r() < 0.5 ? 80 + 20 * r() : 80000 + 10000 * r())),
  'log-uniform 1us..10s': gen(20000, 4, logUniform(1, 1e7)),
  // Nanosecond capture resolution, with 5% zero handshakes (ACK stamped with the SYN's time).
  'ns resolution with zeros': gen(20000, 5, (r) => (r() < 0.05 ? 0 : Math.round(logNormal(300, 1)(r) * 1000) / 1000)),
  'below 1us (negative indices)': gen(5000, 6, logUniform(MIN_INDEXABLE_US, 1)),
  'n = 1': gen(1, 7, logNormal(500, 1)),
  'n = 2': gen(2, 8, logNormal(500, 1)),
  'n = 3': gen(3, 9, logNormal(500, 1)),
  'n = 10': gen(10, 10, logNormal(500, 1)),
  'single zero': [0],
  'ten to one': [10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
};

const REQUIRED_QS = [0, 0.5, 0.9, 0.99, 1];
const MORE_QS = [0.001, 0.01, 0.1, 0.25, 0.75, 0.95, 0.999];

function nearestRank(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

// The bucket boundaries come from logarithms: a value on a boundary may land one bucket over,
// which costs a few ulps beyond the accuracy, hence the 1e-9 slack.
function expectWithin(estimate: number | undefined, exact: number, accuracy: number, what: string): void {
  if (estimate === undefined) throw new Error(`${what}: no estimate`);
  const err = Math.abs(estimate - exact);
  if (!(err <= accuracy * exact * (1 + 1e-9))) {
    throw new Error(`${what}: estimate ${estimate} vs exact ${exact}, relative error ${err / exact} > ${accuracy}`);
  }
}

function build(values: number[], accuracy = 0.01, cap = DEFAULT_MAX_BUCKETS): RttSketch {
  const s = new RttSketch(accuracy, cap);
  for (const v of values) s.add(v);
  return s;
}

describe('quantiles are within the relative accuracy of the exact nearest-rank value', () => {
  // 2048 buckets at 0.1% span only a factor of 60, so the finer accuracy gets a larger cap.
  for (const [accuracy, cap] of [[0.01, DEFAULT_MAX_BUCKETS], [0.001, MAX_MAX_BUCKETS], [0.05, DEFAULT_MAX_BUCKETS]] as const) {
    for (const [name, values] of Object.entries(DISTRIBUTIONS)) {
      test(`${name}, accuracy ${accuracy}`, () => {
        const s = build(values, accuracy, cap);
        const sorted = [...values].sort((a, b) => a - b);
        expect(s.count).toBe(values.length);
        expect(s.min).toBe(sorted[0]);
        expect(s.max).toBe(sorted[sorted.length - 1]);
        expect(s.sum).toBeCloseTo(values.reduce((a, b) => a + b, 0), 6);
        expect(s.zeroCount).toBe(values.filter((v) => v < MIN_INDEXABLE_US).length);
        expect(s.quantile(0)).toBe(sorted[0]);
        expect(s.quantile(1)).toBe(sorted[sorted.length - 1]);
        for (const q of [...REQUIRED_QS, ...MORE_QS]) {
          const estimate = s.quantile(q)!;
          expectWithin(estimate, nearestRank(sorted, q), accuracy, `q=${q}`);
          expect(estimate).toBeGreaterThanOrEqual(sorted[0]!);
          expect(estimate).toBeLessThanOrEqual(sorted[sorted.length - 1]!);
        }
      });
    }
  }

  test('the rank is the one percentilesNs uses for handshake times', () => {
    const ns = gen(5001, 11, (r) => Math.round(logNormal(2000, 1.5)(r) * 1000));
    const s = build(ns.map((v) => v / 1000));
    const exact = percentilesNs(ns);
    expectWithin(s.quantile(0.5), exact.p50Us, 0.01, 'p50');
    expectWithin(s.quantile(0.9), exact.p90Us, 0.01, 'p90');
    expectWithin(s.quantile(0.99), exact.p99Us, 0.01, 'p99');
  });

  test('a constant is returned exactly, as are small hand-checked cases', () => {
    const s = build(new Array<number>(100).fill(70034));
    for (const q of REQUIRED_QS) expect(s.quantile(q)).toBe(70034);
    const ten = build([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expectWithin(ten.quantile(0.5), 5, 0.01, 'p50 of 1..10');
    expectWithin(ten.quantile(0.9), 9, 0.01, 'p90 of 1..10');
    expectWithin(ten.quantile(0.99), 10, 0.01, 'p99 of 1..10');
    const zeros = build([0, 0, 0, 250]);
    expect(zeros.quantile(0.5)).toBe(0);
    expect(zeros.quantile(0.75)).toBe(0);
    expectWithin(zeros.quantile(0.76), 250, 0.01, 'rank 4 of 4');
  });

  test('an empty sketch has no quantiles, min or max', () => {
    const s = new RttSketch();
    expect(s.count).toBe(0);
    expect(s.sum).toBe(0);
    expect(s.min).toBeUndefined();
    expect(s.max).toBeUndefined();
    for (const q of REQUIRED_QS) expect(s.quantile(q)).toBeUndefined();
  });

  test('add with a count is the same as adding one at a time', () => {
    const a = new RttSketch();
    const b = new RttSketch();
    for (const [v, c] of [[120, 3], [0, 2], [5e6, 1], [120.5, 4]] as const) {
      a.add(v, c);
      for (let i = 0; i < c; i++) b.add(v);
    }
    a.add(42, 0);
    expect(a.buckets()).toEqual(b.buckets());
    expect([a.count, a.zeroCount, a.min, a.max, a.sum]).toEqual([b.count, b.zeroCount, b.min, b.max, b.sum]);
  });
});

test('bad values, counts, quantiles and parameters are RangeErrors', () => {
  const s = new RttSketch();
  for (const v of [NaN, -1, -1e-300, Infinity, -Infinity]) expect(() => s.add(v)).toThrow(RangeError);
  for (const c of [1.5, -1, NaN, Infinity, 2 ** 53]) expect(() => s.add(1, c)).toThrow(RangeError);
  expect(s.count).toBe(0);
  s.add(-0);
  expect(Object.is(s.min, 0)).toBe(true);
  for (const q of [-0.01, 1.01, NaN]) expect(() => s.quantile(q)).toThrow(RangeError);
  for (const a of [0, 1, -0.01, NaN, 1e-7]) expect(() => new RttSketch(a)).toThrow(RangeError);
  for (const cap of [0, 1.5, MAX_MAX_BUCKETS + 1]) expect(() => new RttSketch(0.01, cap)).toThrow(RangeError);
});

describe('merging', () => {
  const shuffle = <T>(xs: T[], r: () => number): T[] => {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };

  function expectSameSketch(a: RttSketch, b: RttSketch): void {
    expect(a.buckets()).toEqual(b.buckets());
    expect([a.count, a.zeroCount, a.min, a.max]).toEqual([b.count, b.zeroCount, b.min, b.max]);
    // Floating-point addition in another order may differ in the last bits.
    expect(Math.abs(a.sum - b.sum)).toBeLessThanOrEqual(1e-12 * Math.abs(b.sum));
    for (const q of [...REQUIRED_QS, ...MORE_QS]) expect(a.quantile(q)).toBe(b.quantile(q));
  }

  const cases: Array<[string, number[], number]> = [
    ['ns resolution with zeros', DISTRIBUTIONS['ns resolution with zeros']!, DEFAULT_MAX_BUCKETS],
    ['log-uniform 1us..10s', DISTRIBUTIONS['log-uniform 1us..10s']!, DEFAULT_MAX_BUCKETS],
    ['two clusters', DISTRIBUTIONS['two clusters (LAN and WAN)']!, DEFAULT_MAX_BUCKETS],
    // Spans far more than 64 buckets, so every part and the union fold their low buckets.
    ['wide spread, cap 64', [0, 0, ...gen(20000, 12, logUniform(MIN_INDEXABLE_US, 1e12))], 64],
  ];

  for (const [name, values, cap] of cases) {
    test(`parts merged in any order equal the sketch of the union: ${name}`, () => {
      const r = prng(13);
      const union = build(values, 0.01, cap);
      const partValues: number[][] = [[], [], [], [], [], []]; // the last part stays empty
      for (const v of values) partValues[Math.floor(r() * 5)]!.push(v);
      const parts = partValues.map((p) => build(p, 0.01, cap));

      const fold = (order: RttSketch[]): RttSketch => order.reduce((acc, p) => acc.merge(p), new RttSketch(0.01, cap));
      expectSameSketch(fold(parts), union);
      expectSameSketch(fold([...parts].reverse()), union);
      expectSameSketch(fold(shuffle(parts, r)), union);
      // Tree order, merging into existing non-empty sketches.
      const [a, b, c, d, e, f] = parts.map((p) => p.clone());
      expectSameSketch(a!.merge(b!).merge(c!.merge(d!)).merge(e!.merge(f!)), union);
      // The parts are unchanged by being merged from.
      parts.forEach((p, i) => expectSameSketch(p, build(partValues[i]!, 0.01, cap)));
      // Adding the values in another order gives the same buckets too.
      expectSameSketch(build([...values].sort((x, y) => y - x), 0.01, cap), union);
      expectSameSketch(build(shuffle(values, r), 0.01, cap), union);
    });
  }

  test('merging a sketch into itself doubles every count', () => {
    const values = DISTRIBUTIONS['log-normal, median 500us']!;
    const s = build(values);
    s.merge(s);
    expectSameSketch(s, build([...values, ...values]));
  });

  test('a different accuracy cannot be merged', () => {
    const a = build([1, 2, 3], 0.01);
    const b = build([1, 2, 3], 0.02);
    expect(() => a.merge(b)).toThrow(SketchError);
    expect(() => a.merge(b)).toThrow(/relative accuracy 0\.02 into one of 0\.01/);
    try {
      a.merge(new RttSketch(0.02));
    } catch (e) {
      expect((e as SketchError).code).toBe('incompatible');
    }
    expect(a.count).toBe(3);
  });

  test('a sketch with a smaller cap merges into a larger one and stays bounded', () => {
    const values = gen(5000, 14, logUniform(MIN_INDEXABLE_US, 1e15));
    const small = build(values, 0.01, 64);
    const big = new RttSketch(0.01, 256).merge(small);
    expect(big.count).toBe(values.length);
    expect(big.buckets().length).toBeLessThanOrEqual(64);
    expect(big.max).toBe(small.max);
    expect(big.quantile(0.99)).toBe(small.quantile(0.99));
  });
});

/** The documented layout, written independently of the sketch's encoder. */
interface Fields {
  version?: number;
  accuracy: number;
  cap: number;
  count: number;
  min?: number;
  max?: number;
  sum?: number;
  zero?: number;
  buckets?: Array<[number, number]>;
}

function varint(v: number): number[] {
  const out: number[] = [];
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  return out;
}

const f64 = (x: number): number[] => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x);
  return [...b];
};

function encode(f: Fields): Uint8Array {
  const out = [f.version ?? 1, ...f64(f.accuracy), ...varint(f.cap), ...varint(f.count)];
  if (f.count > 0) {
    const buckets = f.buckets ?? [];
    out.push(...f64(f.min!), ...f64(f.max!), ...f64(f.sum!), ...varint(f.zero ?? 0), ...varint(buckets.length));
    buckets.forEach(([index, count], k) => {
      const delta = k === 0 ? (index >= 0 ? 2 * index : -2 * index - 1) : index - buckets[k - 1]![0];
      out.push(...varint(delta), ...varint(count));
    });
  }
  return Uint8Array.from(out);
}

function fieldsOf(s: RttSketch): Fields {
  return {
    accuracy: s.relativeAccuracy,
    cap: s.maxBuckets,
    count: s.count,
    ...(s.count > 0 ? { min: s.min!, max: s.max!, sum: s.sum, zero: s.zeroCount, buckets: s.buckets() } : {}),
  };
}

describe('binary encoding', () => {
  const samples: Record<string, RttSketch> = {
    empty: new RttSketch(),
    'zeros only': build([0, 0, 0]),
    'one value': build([70034]),
    'log-normal': build(DISTRIBUTIONS['log-normal, median 500us']!),
    'ns resolution with zeros': build(DISTRIBUTIONS['ns resolution with zeros']!),
    'below 1us': build(DISTRIBUTIONS['below 1us (negative indices)']!),
    'folded, cap 64': build(gen(3000, 15, logUniform(MIN_INDEXABLE_US, 1e300)), 0.01, 64),
    'accuracy 1e-4, cap 65536': build(gen(3000, 16, logNormal(500, 0.5)), 1e-4, MAX_MAX_BUCKETS),
    'extremes, infinite sum': build([MIN_INDEXABLE_US, Number.MAX_VALUE, Number.MAX_VALUE]),
  };

  test('the layout is the documented one', () => {
    const s = build([0, 1, 1.01, 0.5]);
    const expected = Uint8Array.from([
      1, // version
      ...f64(0.01),
      0x80, 0x10, // cap 2048
      4, // count
      ...f64(0),
      ...f64(1.01),
      ...f64(0 + 1 + 1.01 + 0.5),
      1, // zero count
      3, // buckets
      67, 1, // index -34 (zigzag 67): 0.5 is in (gamma^-35, gamma^-34]
      34, 1, // index 0: 1 = gamma^0
      1, 1, // index 1: 1.01
    ]);
    expect(s.toBytes()).toEqual(expected);
    for (const s2 of Object.values(samples)) expect(s2.toBytes()).toEqual(encode(fieldsOf(s2)));
  });

  for (const [name, s] of Object.entries(samples)) {
    test(`round trip is exact: ${name}`, () => {
      const bytes = s.toBytes();
      const d = RttSketch.fromBytes(bytes);
      expect(d.toBytes()).toEqual(bytes);
      expect(d.relativeAccuracy).toBe(s.relativeAccuracy);
      expect(d.maxBuckets).toBe(s.maxBuckets);
      expect(d.buckets()).toEqual(s.buckets());
      expect([d.count, d.zeroCount, d.min, d.max]).toEqual([s.count, s.zeroCount, s.min, s.max]);
      expect(Object.is(d.sum, s.sum)).toBe(true);
      for (const q of [...REQUIRED_QS, ...MORE_QS]) expect(d.quantile(q)).toBe(s.quantile(q));
      // The decoded sketch keeps working: adding and merging behave as on the original.
      const more = build(gen(500, 17, logNormal(100, 2)), s.relativeAccuracy, s.maxBuckets);
      expect(d.merge(more).toBytes()).toEqual(s.clone().merge(more).toBytes());
      d.add(12345);
      expect(d.count).toBe(s.count + more.count + 1);
    });
  }

  test('decoding reads a view into a larger buffer', () => {
    const bytes = samples['log-normal']!.toBytes();
    const framed = Buffer.concat([Buffer.from([9, 9, 9]), bytes, Buffer.from([7])]);
    const d = RttSketch.fromBytes(framed.subarray(3, 3 + bytes.length));
    expect(d.toBytes()).toEqual(bytes);
  });

  test('a typical handshake sketch is small', () => {
    expect(samples['log-normal']!.toBytes().length).toBeLessThan(1024);
    expect(samples.empty!.toBytes().length).toBe(12);
  });

  test('every truncation throws a truncated error', () => {
    for (const s of Object.values(samples)) {
      const bytes = s.toBytes();
      for (let len = 0; len < bytes.length; len++) {
        let error: unknown;
        try {
          RttSketch.fromBytes(bytes.subarray(0, len));
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(SketchError);
        expect((error as SketchError).code).toBe('truncated');
      }
    }
  });

  const expectCorrupt = (bytes: Uint8Array, message: RegExp, code = 'corrupt'): void => {
    let error: unknown;
    try {
      RttSketch.fromBytes(bytes);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SketchError);
    expect((error as SketchError).code).toBe(code);
    expect((error as Error).message).toMatch(message);
  };

  test('each kind of corruption is named', () => {
    const good: Fields = { accuracy: 0.01, cap: 2048, count: 4, min: 0, max: 1.01, sum: 2.51, zero: 1, buckets: [[-34, 1], [0, 1], [1, 1]] };
    expect(RttSketch.fromBytes(encode(good)).count).toBe(4);
    expectCorrupt(encode({ ...good, version: 2 }), /version 2/, 'unsupported-version');
    expectCorrupt(encode({ ...good, version: 0 }), /version 0/, 'unsupported-version');
    for (const accuracy of [NaN, 0, 1, -0.01, 1e-7, Infinity]) expectCorrupt(encode({ ...good, accuracy }), /relative accuracy/);
    for (const cap of [0, MAX_MAX_BUCKETS + 1]) expectCorrupt(encode({ ...good, cap }), /maxBuckets/);
    expectCorrupt(encode({ ...good, count: 5 }), /count 5 but the buckets hold 4/);
    expectCorrupt(encode({ ...good, count: 3 }), /count 3 but the buckets hold 4/);
    expectCorrupt(Uint8Array.from([...encode(good), 0]), /1 trailing bytes/);
    expectCorrupt(Uint8Array.from([...encode({ accuracy: 0.01, cap: 2048, count: 0 }), 0]), /trailing/);
    expectCorrupt(encode({ ...good, min: 1.5 }), /min 1.5 and max 1.01/);
    expectCorrupt(encode({ ...good, min: -1 }), /min -1/);
    expectCorrupt(encode({ ...good, min: -0 }), /min 0/);
    expectCorrupt(encode({ ...good, max: Infinity }), /max Infinity/);
    expectCorrupt(encode({ ...good, max: NaN }), /max NaN/);
    expectCorrupt(encode({ ...good, sum: NaN }), /sum NaN/);
    expectCorrupt(encode({ ...good, sum: 1 }), /sum 1 is below max/);
    expectCorrupt(encode({ ...good, zero: 5 }), /zero count 5 exceeds count 4/);
    expectCorrupt(encode({ ...good, zero: 0, buckets: [[-34, 2], [0, 1], [1, 1]] }), /zero count 0 disagrees with min 0/);
    expectCorrupt(encode({ ...good, min: 0.5, zero: 1 }), /zero count 1 disagrees with min 0.5/);
    expectCorrupt(encode({ ...good, buckets: [[-34, 2], [-5, 1]] }), /max 1.01 is not in the top bucket -5/);
    expectCorrupt(encode({ ...good, max: 50, sum: 60 }), /max 50 is not in the top bucket 1/);
    // A min below the lowest bucket is legal (folded buckets); one above it is not.
    expect(RttSketch.fromBytes(encode({ ...good, zero: 0, min: 0.9, buckets: [[0, 2], [1, 2]] })).min).toBe(0.9);
    expectCorrupt(encode({ ...good, zero: 0, min: 0.9, buckets: [[-8, 2], [1, 2]] }), /min 0.9 is above the lowest bucket -8/);
    expectCorrupt(encode({ ...good, buckets: [[-34, 1], [0, 0], [1, 2]] }), /bucket 0 has a zero count/);
    expectCorrupt(encode({ ...good, buckets: [[-34, 1], [-34, 1], [1, 1]] }), /not increasing/);
    expectCorrupt(encode({ ...good, buckets: [[-2000, 1], [0, 1], [1, 1]] }), /outside/);
    expectCorrupt(encode({ ...good, buckets: [[-300, 1], [1, 1], [2000, 1]] }), /span more than the cap/);
    expectCorrupt(encode({ ...good, buckets: [[-34, 1], [0, 1], [1e9, 1]] }), /above/);
    expectCorrupt(encode({ ...good, cap: 2, buckets: [[-34, 1], [0, 1], [1, 1]] }), /3 buckets exceed the cap of 2/);
    expectCorrupt(encode({ ...good, count: 2 ** 53, buckets: [[-34, 2 ** 53 - 2], [0, 1], [1, 1]] }), /exceeds 2\^53|overflow/);
    // A 4-value sketch that claims 65536 buckets fails before allocating them.
    const claim = [...encode({ accuracy: 0.01, cap: 65536, count: 4, min: 0, max: 1.01, sum: 2.51, zero: 1 })];
    claim[claim.length - 1] = 0x80;
    claim.push(0x80, 0x04); // 65536 buckets
    expectCorrupt(Uint8Array.from(claim), /65536 buckets need/, 'truncated');
  });

  test('malformed varints are refused', () => {
    const head = [1, ...f64(0.01), 0x80, 0x10];
    expectCorrupt(Uint8Array.from([...head, 0x80, 0x00]), /count is a padded varint/);
    expectCorrupt(Uint8Array.from([...head, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /longer than 8 bytes/);
    expectCorrupt(Uint8Array.from([...head, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), /exceeds 2\^53/);
  });

  // Without a checksum some flips (a bit of the sum, say) still decode; what decodes must then
  // be a well-formed sketch that re-encodes to exactly the bytes given.
  function decodesCleanly(bytes: Uint8Array): boolean {
    let d: RttSketch;
    try {
      d = RttSketch.fromBytes(bytes);
    } catch (e) {
      if (!(e instanceof SketchError)) throw e;
      return false;
    }
    expect(d.toBytes()).toEqual(bytes);
    const inBuckets = d.buckets().reduce((a, [, c]) => a + c, 0);
    expect(inBuckets + d.zeroCount).toBe(d.count);
    if (d.count > 0) {
      expect(d.quantile(0)).toBe(d.min);
      expect(d.quantile(1)).toBe(d.max);
      for (const q of MORE_QS) {
        expect(d.quantile(q)).toBeGreaterThanOrEqual(d.min!);
        expect(d.quantile(q)).toBeLessThanOrEqual(d.max!);
      }
    }
    return true;
  }

  test('flipped bytes throw or decode to a well-formed sketch', () => {
    let thrown = 0;
    for (const name of ['log-normal', 'ns resolution with zeros', 'folded, cap 64', 'empty']) {
      const bytes = samples[name]!.toBytes();
      for (let i = 0; i < bytes.length; i++) {
        for (const mask of [0x01, 0x02, 0x10, 0x40, 0x80, 0xff]) {
          const bad = bytes.slice();
          bad[i]! ^= mask;
          if (!decodesCleanly(bad)) thrown++;
        }
      }
    }
    expect(thrown).toBeGreaterThan(0);
  });

  test('random bytes throw or decode to a well-formed sketch', () => {
    const r = prng(18);
    for (let k = 0; k < 5000; k++) {
      const bytes = Uint8Array.from({ length: Math.floor(r() * 80) }, () => Math.floor(r() * 256));
      if (k % 2 === 0 && bytes.length >= 9) {
        bytes[0] = 1; // past the version check
        bytes.set(f64(0.01), 1);
      }
      decodesCleanly(bytes);
    }
  });
});

describe('bounded memory', () => {
  test('a hostile spread of values keeps at most maxBuckets buckets; the top quantiles stay accurate', () => {
    const values = [MIN_INDEXABLE_US, Number.MAX_VALUE, ...gen(100000, 19, logUniform(MIN_INDEXABLE_US, 1e308))];
    const s = build(values);
    const buckets = s.buckets();
    expect(buckets.length).toBeLessThanOrEqual(DEFAULT_MAX_BUCKETS);
    expect(buckets[buckets.length - 1]![0] - buckets[0]![0] + 1).toBeLessThanOrEqual(DEFAULT_MAX_BUCKETS);
    expect(s.storageBytes).toBeLessThanOrEqual(8 * DEFAULT_MAX_BUCKETS);
    expect(s.toBytes().length).toBeLessThan(DEFAULT_MAX_BUCKETS * 7 + 64);
    expect(s.count).toBe(values.length);
    const sorted = [...values].sort((a, b) => a - b);
    expect(s.quantile(0)).toBe(sorted[0]);
    expect(s.quantile(1)).toBe(sorted[sorted.length - 1]);
    // The kept top 2048 buckets span a factor of gamma^2048 (about 1e17.8) below the max:
    // ranks whose value is there keep the guarantee.
    for (const q of [0.99, 0.999]) expectWithin(s.quantile(q), nearestRank(sorted, q), 0.01, `q=${q}`);
    // Lower ranks were folded upward: documented loss of accuracy, never an underestimate.
    expect(s.quantile(0.5)!).toBeGreaterThan(nearestRank(sorted, 0.5) * 1.01);
  });

  test('an ever-rising max and alternating extremes stay bounded', () => {
    // Every value opens a new top bucket, so every add folds and shifts the store.
    const rising = new RttSketch(0.01, 256);
    const gamma = 1.01 / 0.99;
    let n = 0;
    for (let v = MIN_INDEXABLE_US; v < 1e300; v *= gamma, n++) rising.add(v);
    const alternating = new RttSketch(0.01, 256);
    for (let i = 0; i < 20000; i++) {
      alternating.add(MIN_INDEXABLE_US);
      alternating.add(1e300);
    }
    for (const s of [rising, alternating]) {
      expect(s.storageBytes).toBeLessThanOrEqual(8 * 256);
      expect(s.buckets().length).toBeLessThanOrEqual(256);
      expect(s.min).toBe(MIN_INDEXABLE_US);
    }
    expect(rising.count).toBe(n);
    expect(alternating.max).toBe(1e300);
    expect(alternating.quantile(0.5)).toBe(alternating.quantile(0.25)); // both in the folded floor
    expectWithin(alternating.quantile(0.51), 1e300, 0.01, 'upper half');
  });

  test('typical handshake times need a few kilobytes at most', () => {
    // 10 us .. 1 s is about 580 buckets at 1%.
    const s = build(gen(100000, 20, logUniform(10, 1e6)));
    expect(s.storageBytes).toBeLessThanOrEqual(8 * 1024);
    expect(new RttSketch().storageBytes).toBe(0);
  });
});
