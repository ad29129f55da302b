import type { TcpChunk, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import type { StreamOpen, TcpDissector } from '../../src/stream';
import { prng } from '@kubeshark-mcp/testkit';

// The seeded PRNG of the damage (the same damage on every run), for the tests that use this module.
export { prng };

export type DamageMode = 'flip' | 'gap' | 'truncate';

/**
 * Wraps a dissector so that the events of one stream (`victim`) are damaged: `flip` changes
 * three random bytes of every chunk, `gap` turns about a third of the chunks into gaps,
 * `truncate` stops the stream part-way through a chunk (and withholds its ends but the last).
 * Other streams pass through untouched.
 */
export function damage(target: TcpDissector, victim: number, seed: number, mode: DamageMode): TcpDissector {
  const rand = prng(seed);
  let chunks = 0;
  const cutAt = 1 + Math.floor(rand() * 12);
  let cut = false;
  return {
    open: (s: number, i: StreamOpen) => target.open(s, i),
    flush: () => target.flush(),
    onData: (c: TcpChunk) => {
      if (c.stream !== victim) return target.onData(c);
      chunks++;
      if (mode === 'truncate' && chunks >= cutAt) {
        if (!cut) {
          cut = true;
          target.onData({ ...c, length: Math.floor(rand() * c.length) });
        }
        return undefined;
      }
      if (mode === 'gap' && rand() < 0.3) {
        const g: TcpGap = { stream: c.stream, dir: c.dir, offset: c.offset, length: c.length, reason: 'acked', sec: c.firstSec, nsec: c.firstNsec };
        return target.onGap(g);
      }
      if (mode === 'flip') {
        const copy = Buffer.from(c.buf.subarray(c.start, c.start + c.length));
        for (let i = 0; i < 3; i++) if (copy.length > 0) copy[Math.floor(rand() * copy.length)] = Math.floor(rand() * 256);
        return target.onData({ ...c, buf: copy, start: 0 });
      }
      return target.onData(c);
    },
    onGap: (g: TcpGap) => target.onGap(g),
    onEnd: (e: TcpEnd) => (mode === 'truncate' && cut && e.stream === victim && !e.closed ? undefined : target.onEnd(e)),
  };
}
