import { cacheSize, clearCache, compile, KflError, LIMITS, normalize } from '../src';

describe('compile cache', () => {
  beforeEach(() => clearCache());

  test('one entry per filter text; now() is bound per compile, not per cache entry', () => {
    const text = 'timestamp > now() - duration("5m")';
    const a = compile(text, { now: 1_000_000_000 });
    const b = compile(text, { now: 2_000_000_000 });
    expect(cacheSize()).toBe(1);
    const rec = { timestamp: 1_500_000_000 };
    expect(a.matches(rec)).toBe(true);
    expect(b.matches(rec)).toBe(false);
    expect(a.now).toBe(1_000_000_000);
    // Without an explicit now, now() is the time of the compile call.
    const before = Date.now() * 1000;
    const c = compile(text);
    expect(c.now).toBeGreaterThanOrEqual(before);
    expect(c.now).toBeLessThanOrEqual(Date.now() * 1000);
  });

  test('stats are per compiled filter, not shared through the cache', () => {
    const a = compile('1 / status_code == 1');
    const b = compile('1 / status_code == 1');
    a.matches({});
    expect(a.stats).toEqual({ evaluated: 1, errors: 1, lastError: 'division by zero' });
    expect(b.stats).toEqual({ evaluated: 0, errors: 0 });
  });

  test('macros are part of the key', () => {
    expect(compile('m', { macros: { m: 'http' } }).normalized).toBe('http');
    expect(compile('m', { macros: { m: 'dns' } }).normalized).toBe('dns');
    expect(cacheSize()).toBe(2);
  });

  test('least recently used first out; refusals are not cached', () => {
    for (let i = 0; i < LIMITS.cacheSize + 10; i++) compile(`status_code == ${i}`);
    expect(cacheSize()).toBe(LIMITS.cacheSize);
    expect(() => compile('staus_code == 1')).toThrow(KflError);
    expect(cacheSize()).toBe(LIMITS.cacheSize);
  });

  test('normalize gives the canonical text and throws like compile', () => {
    expect(normalize('src.ns=="a"||(dst.ns=="b")')).toBe('src.namespace == "a" || dst.namespace == "b"');
    expect(() => normalize('src.nss == "a"')).toThrow('unknown field "src.nss" at 1:1; did you mean "src.namespace"?');
  });
});
