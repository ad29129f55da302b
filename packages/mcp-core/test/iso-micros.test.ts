import { isoMicros } from '../src/model';

/** isoMicros against Date#toISOString plus the microsecond digits, over many seconds (the cache of second texts fills and is cleared). */
test('RFC 3339 with microseconds, equal to toISOString and the microsecond digits, across cache refills', () => {
  const reference = (us: number): string => `${new Date(Math.floor(us / 1000)).toISOString().slice(0, 19)}.${String(Math.floor(us) % 1_000_000).padStart(6, '0')}Z`;
  const values = [0, 999_999, 1_000_000, 1_362_692_526_939_084, 1_362_692_526_000_000, 1_362_692_526_999_999, 4_102_444_799_999_999, 1_362_692_526_939_084.5];
  let x = 1_700_000_000_000_000;
  for (let i = 0; i < 10_000; i++) {
    x += 1 + ((i * 7919) % 3_000_000);
    values.push(x);
  }
  for (const us of values) expect(isoMicros(us)).toBe(reference(us));
  expect(isoMicros(1_362_692_526_939_084)).toBe('2013-03-07T21:42:06.939084Z');
});
