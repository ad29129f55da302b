import { KflBudgetError, KflRuntimeError } from './errors';
import { LIMITS } from './limits';

/**
 * Values at run time and the helpers both the compiled filters and the interpreter use for
 * the parts of CEL that plain JavaScript operators do not give: checked integer arithmetic,
 * deep equality, map keys without the prototype chain, RE2-compatible regexes, Go durations
 * and RFC 3339 timestamps. Timestamps and durations are numbers of microseconds, the unit
 * of stored entries, so comparing and adding them is plain arithmetic.
 */

export type Value = null | boolean | number | string | Uint8Array | readonly Value[] | { readonly [key: string]: Value };
export type ValueMap = { readonly [key: string]: Value };

const hasOwn = Object.prototype.hasOwnProperty;

export const fail = (msg: string): never => {
  throw new KflRuntimeError(msg);
};

/** Per-record iteration budget of the macros. */
export interface Budget {
  n: number;
}
export const newBudget = (): Budget => ({ n: LIMITS.maxIterations });
export function tick(b: Budget): void {
  if (--b.n < 0) throw new KflBudgetError(`more than ${LIMITS.maxIterations} macro iterations for one record`);
}

// ---- integers: exact up to 2^53; beyond that is an overflow error, not a silent rounding.

export function chkI(v: number): number {
  return Number.isSafeInteger(v) ? v : fail('integer overflow');
}
export function chkU(v: number): number {
  return Number.isSafeInteger(v) && v >= 0 ? v : fail('unsigned integer overflow');
}
export function divI(a: number, b: number): number {
  return b === 0 ? fail('division by zero') : chkI(Math.trunc(a / b));
}
export function modI(a: number, b: number): number {
  return b === 0 ? fail('modulus by zero') : a % b;
}

// ---- equality and ordering

export function eq(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!(Array.isArray(a) && Array.isArray(b)) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!eq(a[i] as Value, b[i] as Value)) return false;
    return true;
  }
  const am = a as ValueMap;
  const bm = b as ValueMap;
  const ak = Object.keys(am);
  if (ak.length !== Object.keys(bm).length) return false;
  for (const k of ak) if (!hasOwn.call(bm, k) || !eq(am[k]!, bm[k]!)) return false;
  return true;
}

export function cmpBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** `x in list`, strict equality for scalars (NaN is in no list, as in CEL). */
export function inList(x: Value, l: readonly Value[]): boolean {
  if (x === null || typeof x !== 'object') return l.indexOf(x) >= 0;
  for (const v of l) if (eq(x, v)) return true;
  return false;
}

// ---- maps (own keys only: "__proto__" or "constructor" are ordinary absent keys)

export function hasKey(m: ValueMap, k: Value): boolean {
  return typeof k === 'string' && hasOwn.call(m, k);
}
export function getKey(m: ValueMap, k: Value): Value {
  return typeof k === 'string' && hasOwn.call(m, k) ? m[k]! : fail(`no such key: ${JSON.stringify(k)}`);
}
/** `m[k] == v` where an absent key counts as false (positive positions only; see codegen). */
export function eqKey(m: ValueMap, k: Value, v: Value): boolean {
  return typeof k === 'string' && hasOwn.call(m, k) && m[k] === v;
}
/** `m[k] != v` where an absent key counts as false (positive positions only). */
export function neKey(m: ValueMap, k: Value, v: Value): boolean {
  return typeof k === 'string' && hasOwn.call(m, k) && m[k] !== v;
}
export function mapGet(m: ValueMap, k: Value, d: Value): Value {
  return typeof k === 'string' && hasOwn.call(m, k) ? m[k]! : d;
}
export function at(l: readonly Value[], i: number): Value {
  return Number.isInteger(i) && i >= 0 && i < l.length ? l[i]! : fail(`index ${i} out of range [0, ${l.length})`);
}
/** A map literal; keys are strings (checked statically), later duplicates are an error as in CEL. */
export function mapOf(kv: readonly Value[]): ValueMap {
  const out: Record<string, Value> = Object.create(null) as Record<string, Value>;
  for (let i = 0; i < kv.length; i += 2) {
    const k = kv[i] as string;
    if (hasOwn.call(out, k)) fail(`duplicate map key ${JSON.stringify(k)}`);
    out[k] = kv[i + 1]!;
  }
  return out;
}

// ---- sizes

/** Length in Unicode code points, as CEL counts strings. */
export function sizeStr(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}
export const sizeMap = (m: ValueMap): number => Object.keys(m).length;

// ---- conversions

export function intOf(v: Value, from: string): number {
  switch (from) {
    case 'int':
    case 'uint':
      return chkI(v as number);
    case 'double': {
      const d = v as number;
      return Number.isFinite(d) ? chkI(Math.trunc(d)) : fail(`int(${d}) is out of range`);
    }
    case 'string': {
      const s = v as string;
      return /^[+-]?[0-9]+$/.test(s) ? chkI(Number(s)) : fail(`int(${JSON.stringify(s)}): not an integer`);
    }
    case 'timestamp':
      return Math.floor((v as number) / 1e6);
    case 'duration':
      // CEL's int(duration) is nanoseconds.
      return chkI(Math.trunc((v as number) * 1000));
    default:
      return fail(`int() of ${from}`);
  }
}
export function uintOf(v: Value, from: string): number {
  const i = intOf(v, from);
  return i >= 0 ? i : fail(`uint(${i}) is negative`);
}
export function doubleOf(v: Value, from: string): number {
  if (from === 'string') {
    const s = (v as string).trim();
    const d = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$|^[+-]?(?:Infinity|inf)$|^NaN$/i.test(s) ? Number(s.replace(/inf$/i, 'Infinity')) : NaN;
    return Number.isNaN(d) && !/^nan$/i.test(s) ? fail(`double(${JSON.stringify(v)}): not a number`) : d;
  }
  return v as number;
}
export function stringOf(v: Value, from: string): string {
  switch (from) {
    case 'string':
      return v as string;
    case 'bool':
    case 'int':
    case 'uint':
      return String(v);
    case 'double': {
      const d = v as number;
      return Number.isInteger(d) && Math.abs(d) < 1e21 ? `${d}` : String(d);
    }
    case 'timestamp':
      return formatTimestamp(v as number);
    case 'duration':
      return `${(v as number) / 1e6}s`;
    case 'bytes': {
      const b = v as Uint8Array;
      const s = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
      return s.includes('\ufffd') ? fail('string(bytes): invalid UTF-8') : s;
    }
    default:
      return fail(`string() of ${from}`);
  }
}

// ---- time

const DURATION_UNITS: Record<string, number> = { ns: 1e-3, us: 1, 'µs': 1, 'μs': 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };

/** Go's time.ParseDuration, in microseconds; throws a plain Error with the reason. */
export function parseDuration(s: string): number {
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest[0] === '-' ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw new Error(`invalid duration ${JSON.stringify(s)}`);
  let total = 0;
  const re = /^([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest.length > 0) {
    const m = re.exec(rest);
    if (!m || m[1] === '' || m[1] === '.') {
      const unit = /^[0-9.]+([^0-9.]*)/.exec(rest);
      throw new Error(unit && unit[1] === '' ? `missing unit in duration ${JSON.stringify(s)} (use ns, us, ms, s, m or h)` : `invalid duration ${JSON.stringify(s)} (units: ns, us, ms, s, m, h)`);
    }
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (total > 9.2e15) throw new Error(`duration ${JSON.stringify(s)} is out of range`);
  return sign * total;
}

/** RFC 3339 (`2026-03-14T22:00:00Z`, `...00.123456+02:00`) in microseconds since the epoch. */
export function parseTimestamp(s: string): number {
  const m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$/.exec(s);
  if (!m) throw new Error(`invalid timestamp ${JSON.stringify(s)} (RFC 3339, e.g. "2026-03-14T22:00:00Z")`);
  const [y, mo, d, h, mi, se] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  const ms = Date.UTC(y!, mo! - 1, d!, h!, mi!, se!);
  const back = new Date(ms);
  if (y! < 1 || back.getUTCFullYear() !== y || back.getUTCMonth() !== mo! - 1 || back.getUTCDate() !== d || h! > 23 || mi! > 59 || se! > 59) {
    throw new Error(`invalid timestamp ${JSON.stringify(s)}: no such date or time`);
  }
  const frac = m[7] ? Math.floor(Number(`0${m[7]}`.padEnd(8, '0').slice(0, 8)) * 1e6) : 0;
  const tz = m[8]!;
  const off = tz === 'Z' || tz === 'z' ? 0 : (tz[0] === '-' ? -1 : 1) * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6)));
  return (ms - off * 60_000) * 1000 + frac;
}

/** RFC 3339 in UTC with the fraction's trailing zeros dropped, as CEL's string(timestamp). */
export function formatTimestamp(us: number): string {
  const whole = Math.floor(us / 1e6);
  const frac = us - whole * 1e6;
  const base = new Date(whole * 1000).toISOString().slice(0, 19);
  const f = frac > 0 ? `.${String(Math.round(frac)).padStart(6, '0')}`.replace(/0+$/, '') : '';
  return `${base}${f}Z`;
}

// ---- regular expressions

const POSIX: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

/**
 * Translates an RE2 pattern to a JavaScript RegExp, refusing what RE2 does not accept
 * (backreferences, lookaround) and what JavaScript would run in exponential time (unbounded
 * repetition of a group that itself repeats without bound, like `(a+)+`: RE2 is linear-time,
 * JavaScript backtracks). Throws a plain Error saying why.
 */
export function compileRe2(pattern: string): RegExp {
  if (pattern.length > LIMITS.maxRegexLength) throw new Error(`the regular expression is longer than ${LIMITS.maxRegexLength} characters`);
  let src = pattern;
  let flags = '';
  const lead = /^\(\?([imsU]+)\)/.exec(src);
  if (lead) {
    if (lead[1]!.includes('U')) throw new Error('the ungreedy flag (?U) is not supported');
    flags = [...new Set(lead[1]!)].join('');
    src = src.slice(lead[0].length);
  }
  let out = '';
  let unicode = false;
  // Per open group: did it contain an unbounded repetition?
  const groups: boolean[] = [false];
  let lastAtomUnbounded = false;
  let lastWasGroup = false;
  const markUnbounded = (): void => {
    groups[groups.length - 1] = true;
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\\') {
      const e = src[i + 1];
      if (e === undefined) throw new Error('trailing backslash');
      if (/[1-9]/.test(e)) throw new Error(`backreferences (\\${e}) are not RE2 syntax`);
      if (e === 'k') throw new Error('backreferences (\\k<name>) are not RE2 syntax');
      if (e === 'Z') throw new Error('\\Z is not RE2 syntax (use \\z or $)');
      if (e === 'C') throw new Error('\\C is not supported');
      if (e === 'A') out += '(?<![\\s\\S])';
      else if (e === 'z') out += '(?![\\s\\S])';
      else if (e === 'Q') {
        const end = src.indexOf('\\E', i + 2);
        const lit = src.slice(i + 2, end < 0 ? src.length : end);
        out += lit.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
        i = end < 0 ? src.length : end + 2;
        lastWasGroup = false;
        continue;
      } else if (e === 'p' || e === 'P') {
        unicode = true;
        if (src[i + 2] === '{') {
          const end = src.indexOf('}', i + 2);
          if (end < 0) throw new Error('unterminated \\p{...}');
          out += `\\${e}{${src.slice(i + 3, end)}}`;
          i = end + 1;
          lastWasGroup = false;
          continue;
        }
        const name = src[i + 2];
        if (name === undefined) throw new Error('\\p needs a class name');
        out += `\\${e}{${name}}`;
        i += 3;
        lastWasGroup = false;
        continue;
      } else out += c + e;
      i += 2;
      lastWasGroup = false;
      continue;
    }
    if (c === '[') {
      // A character class, copied with POSIX classes translated.
      let j = i + 1;
      let cls = '[';
      if (src[j] === '^') {
        cls += '^';
        j++;
      }
      if (src[j] === ']') {
        cls += '\\]';
        j++;
      }
      for (;;) {
        if (j >= src.length) throw new Error('missing ] in a character class');
        const d = src[j]!;
        if (d === ']') break;
        if (d === '\\') {
          const e = src[j + 1] ?? '';
          if (/[1-9]/.test(e)) throw new Error(`\\${e} in a character class is not RE2 syntax`);
          if (e === 'p' || e === 'P') unicode = true;
          cls += d + e;
          j += 2;
          continue;
        }
        if (d === '[' && src[j + 1] === ':') {
          const end = src.indexOf(':]', j + 2);
          const name = end < 0 ? '' : src.slice(j + 2, end);
          if (name.startsWith('^')) throw new Error(`negated POSIX class [:${name}:] is not supported`);
          const set = POSIX[name];
          if (set === undefined) throw new Error(`unknown POSIX class [:${name}:]`);
          cls += set;
          j = end + 2;
          continue;
        }
        if (d === '[') {
          cls += '\\[';
          j++;
          continue;
        }
        cls += d;
        j++;
      }
      out += `${cls}]`;
      i = j + 1;
      lastWasGroup = false;
      continue;
    }
    if (c === '(') {
      if (src[i + 1] === '?') {
        const rest = src.slice(i + 2);
        if (rest.startsWith('=') || rest.startsWith('!') || rest.startsWith('<=') || rest.startsWith('<!')) throw new Error('lookahead and lookbehind ((?=, (?!, (?<=, (?<!) are not RE2 syntax');
        if (rest.startsWith('P=')) throw new Error('backreferences ((?P=name)) are not RE2 syntax');
        if (rest.startsWith('P<')) {
          out += '(?<';
          i += 4;
        } else if (rest.startsWith('<') || rest.startsWith(':')) {
          out += src.slice(i, i + 3);
          i += 3;
        } else throw new Error('inline flags are only supported at the start of the pattern, e.g. (?i)abc');
      } else {
        out += c;
        i++;
      }
      groups.push(false);
      lastWasGroup = false;
      continue;
    }
    if (c === ')') {
      if (groups.length < 2) throw new Error('unmatched )');
      lastAtomUnbounded = groups.pop()!;
      if (lastAtomUnbounded) markUnbounded();
      out += c;
      i++;
      lastWasGroup = true;
      continue;
    }
    const rep = /^(?:[*+?]|\{([0-9]+)(,([0-9]*))?\})/.exec(src.slice(i));
    if (rep) {
      const tok = rep[0];
      const lo = rep[1] !== undefined ? Number(rep[1]) : 0;
      const hi = rep[2] === undefined ? lo : rep[3] === '' ? Infinity : Number(rep[3]);
      if ((rep[1] !== undefined && lo > 1000) || (hi !== Infinity && hi > 1000)) throw new Error('repetition counts above 1000 are not RE2 syntax');
      const unbounded = tok === '*' || tok === '+' || hi === Infinity;
      if (unbounded && lastWasGroup && lastAtomUnbounded) {
        throw new Error('nested unbounded repetition such as (a+)+ is refused: JavaScript runs regexes by backtracking and it can take exponential time');
      }
      if (unbounded) markUnbounded();
      out += tok;
      i += tok.length;
      if (src[i] === '?') {
        out += '?';
        i++;
      }
      lastWasGroup = false;
      continue;
    }
    out += c;
    i++;
    lastWasGroup = false;
  }
  if (groups.length > 1) throw new Error('missing )');
  try {
    return new RegExp(out, flags + (unicode ? 'u' : ''));
  } catch (e) {
    throw new Error(`invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
}

const dynamicRegexes = new Map<string, RegExp | string>();
/** `s.matches(re)` with a pattern computed per record: compiled once per pattern (bounded cache). */
export function matchesDyn(s: string, pattern: string): boolean {
  let re = dynamicRegexes.get(pattern);
  if (re === undefined) {
    try {
      re = compileRe2(pattern);
    } catch (e) {
      re = (e as Error).message;
    }
    if (dynamicRegexes.size >= LIMITS.cacheSize) dynamicRegexes.clear();
    dynamicRegexes.set(pattern, re);
  }
  return typeof re === 'string' ? fail(re) : re.test(s);
}

export const EMPTY_LIST: readonly Value[] = Object.freeze([]);
export const EMPTY_MAP: ValueMap = Object.freeze(Object.create(null) as ValueMap);
export const EMPTY_BYTES = new Uint8Array(0);

// ---- logic and macros for compiled filters (the interpreter writes its own)

/** An error CEL's logic may absorb: a runtime error, but not a spent budget. */
export const absorbable = (e: unknown): boolean => e instanceof KflRuntimeError && !(e instanceof KflBudgetError);

/** `l && r` when `l` can fail: `error && false` is false, as in CEL. */
export function and(l: () => Value, r: () => Value): boolean {
  let a: Value;
  try {
    a = l();
  } catch (e) {
    if (!absorbable(e)) throw e;
    if (r() === false) return false;
    throw e;
  }
  return a === false ? false : (r() as boolean);
}
/** `l || r` when `l` can fail: `error || true` is true. */
export function or(l: () => Value, r: () => Value): boolean {
  let a: Value;
  try {
    a = l();
  } catch (e) {
    if (!absorbable(e)) throw e;
    if (r() === true) return true;
    throw e;
  }
  return a === true ? true : (r() as boolean);
}

const itemsOf = (range: Value): readonly Value[] => (Array.isArray(range) ? (range as readonly Value[]) : Object.keys(range as ValueMap));

export function exists(range: Value, b: Budget, pred: (x: Value) => Value): boolean {
  let err: unknown = null;
  for (const x of itemsOf(range)) {
    tick(b);
    try {
      if (pred(x) === true) return true;
    } catch (e) {
      if (!absorbable(e)) throw e;
      err ??= e;
    }
  }
  if (err !== null) throw err;
  return false;
}
export function all(range: Value, b: Budget, pred: (x: Value) => Value): boolean {
  let err: unknown = null;
  for (const x of itemsOf(range)) {
    tick(b);
    try {
      if (pred(x) === false) return false;
    } catch (e) {
      if (!absorbable(e)) throw e;
      err ??= e;
    }
  }
  if (err !== null) throw err;
  return true;
}
export function existsOne(range: Value, b: Budget, pred: (x: Value) => Value): boolean {
  let n = 0;
  for (const x of itemsOf(range)) {
    tick(b);
    if (pred(x) === true) n++;
  }
  return n === 1;
}
export function filter(range: Value, b: Budget, pred: (x: Value) => Value): Value[] {
  const out: Value[] = [];
  for (const x of itemsOf(range)) {
    tick(b);
    if (pred(x) === true) out.push(x);
  }
  return out;
}
export function mapList(range: Value, b: Budget, pred: ((x: Value) => Value) | null, body: (x: Value) => Value): Value[] {
  const out: Value[] = [];
  for (const x of itemsOf(range)) {
    tick(b);
    if (pred !== null && pred(x) !== true) continue;
    out.push(body(x));
  }
  return out;
}

export function sizeAny(v: Value): number {
  if (typeof v === 'string') return sizeStr(v);
  if (v instanceof Uint8Array || Array.isArray(v)) return v.length;
  return sizeMap(v as ValueMap);
}
const tooBig = (): never => fail(`a value built by "+" is larger than ${LIMITS.maxValueSize}`);
export function catS(a: string, b: string): string {
  return a.length + b.length > LIMITS.maxValueSize ? tooBig() : a + b;
}
export function catL(a: readonly Value[], b: readonly Value[]): readonly Value[] {
  return a.length + b.length > LIMITS.maxValueSize ? tooBig() : a.concat(b);
}
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length + b.length > LIMITS.maxValueSize) tooBig();
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
export function timestampDyn(s: string): number {
  try {
    return parseTimestamp(s);
  } catch (e) {
    return fail((e as Error).message);
  }
}
export function durationDyn(s: string): number {
  try {
    return parseDuration(s);
  } catch (e) {
    return fail((e as Error).message);
  }
}
