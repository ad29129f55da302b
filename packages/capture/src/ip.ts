/**
 * IP addresses as 32-bit words (IPv4 in word 0, the rest zero; IPv6 in all four), the form the
 * flow table keys on, and their text forms. Formatting follows RFC 5952, as tshark prints.
 */

export interface IpWords {
  version: 4 | 6;
  w0: number;
  w1: number;
  w2: number;
  w3: number;
}

export function formatIpv4(w: number): string {
  return `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`;
}

export function formatIpv6(w0: number, w1: number, w2: number, w3: number): string {
  const g = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  // RFC 5952: compress the longest run (leftmost on a tie) of two or more zero groups.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function formatIp(version: 4 | 6, w0: number, w1: number, w2: number, w3: number): string {
  return version === 4 ? formatIpv4(w0) : formatIpv6(w0, w1, w2, w3);
}

/** Parses a textual IPv4 or IPv6 address; undefined when it is not one. */
export function parseIp(text: string): IpWords | undefined {
  const s = text.trim();
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) {
    const parts = s.split('.').map(Number);
    if (parts.some((x) => x > 255)) return undefined;
    const [a, b, c, d] = parts as [number, number, number, number];
    return { version: 4, w0: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0, w1: 0, w2: 0, w3: 0 };
  }
  if (!s.includes(':') || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes('.')) {
        const v4 = parseIp(item);
        if (!v4 || v4.version !== 4) return undefined;
        out.push(v4.w0 >>> 16, v4.w0 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return undefined;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  const tail = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const word = (i: number): number => ((groups[i]! << 16) | groups[i + 1]!) >>> 0;
  return { version: 6, w0: word(0), w1: word(2), w2: word(4), w3: word(6) };
}
