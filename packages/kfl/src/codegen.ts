import type { TExpr } from './checker';
import type { KflRecord } from './record';
import * as rt from './runtime';
import type { Value } from './runtime';
import type { Type } from './types';

/**
 * Compiles a typed tree to one JavaScript function. The generated source contains only
 * catalogue property names (checked against a strict pattern), generated local names, numbers
 * printed by the engine, and references to a constant table: every string, regex, list and
 * bytes value from the filter is passed in `K`, never spliced into the code, so no filter text
 * can become code.
 */

export type Matcher = (r: KflRecord) => boolean;
export type MatcherFactory = (now: number) => Matcher;

const SAFE_PROP = /^[a-z_][a-z0-9_]*$/;
const SAFE_NUMBER = /^-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?$/;
const SCALAR_EQ = new Set(['int', 'uint', 'double', 'string', 'bool', 'timestamp', 'duration', 'null']);
const KINDS = new Set(['int', 'uint', 'double', 'string', 'bool', 'bytes', 'timestamp', 'duration', 'dyn', 'list', 'map', 'null']);

function zeroCode(t: Type): string {
  switch (t.k) {
    case 'int':
    case 'uint':
    case 'double':
    case 'timestamp':
    case 'duration':
      return '0';
    case 'string':
      return '""';
    case 'bool':
      return 'false';
    case 'bytes':
      return 'rt.EMPTY_BYTES';
    case 'list':
      return 'rt.EMPTY_LIST';
    case 'map':
      return 'rt.EMPTY_MAP';
    case 'null':
    case 'dyn':
      return 'null';
  }
}

/** Whether evaluating the node can raise a runtime error (then `&&`/`||` need CEL's absorption). */
function canThrow(e: TExpr): boolean {
  switch (e.k) {
    case 'const':
    case 'field':
    case 'present':
    case 'var':
    case 'now':
      return false;
    case 'index':
    case 'comp':
    case 'mapLit':
      return true;
    case 'neg':
      return e.t.k === 'int' || canThrow(e.x);
    case 'arith':
      return e.t.k !== 'double' && e.t.k !== 'timestamp' && e.t.k !== 'duration' ? true : canThrow(e.l) || canThrow(e.r);
    case 'call':
      if (e.fn === 'matches' && !e.re) return true;
      if (['timestamp', 'duration', 'int', 'uint', 'double', 'string'].includes(e.fn)) return true;
      return e.args.some(canThrow);
    case 'not':
      return canThrow(e.x);
    case 'has':
      return canThrow(e.x);
    case 'and':
    case 'or':
    case 'cmp':
    case 'eq':
    case 'in':
      return canThrow(e.l) || canThrow(e.r);
    case 'cond':
      return canThrow(e.c) || canThrow(e.a) || canThrow(e.b);
    case 'list':
      return e.elems.some(canThrow);
  }
}

export function generate(expr: TExpr): { source: string; consts: unknown[] } {
  const consts: unknown[] = [];
  const k = (v: unknown): string => {
    consts.push(v);
    return `k${consts.length - 1}`;
  };
  let usesBudget = false;
  const kind = (t: Type): string => {
    if (!KINDS.has(t.k)) throw new Error(`internal: unexpected type ${t.k}`);
    return JSON.stringify(t.k);
  };

  /**
   * `pos`: the node's value reaches the root only through `&&`, `||` and conditional branches.
   * There an error and `false` lead to the same decision (the record does not match), so a
   * comparison with a map entry that is absent can be false instead of throwing: the same
   * result as CEL without an exception per record (`request.headers["x"] == "y"` on entries
   * lacking the header). Elsewhere (under `!`, in conditions, macros) CEL's error stands.
   */
  const g = (e: TExpr, pos = false): string => {
    switch (e.k) {
      case 'const': {
        const v = e.v;
        if (typeof v === 'boolean') return v ? 'true' : 'false';
        if (v === null) return 'null';
        if (typeof v === 'number') {
          const s = String(v);
          if (Object.is(v, -0) || !SAFE_NUMBER.test(s)) return k(v);
          return v < 0 ? `(${s})` : s;
        }
        return k(v);
      }
      case 'field':
      case 'present': {
        const path = e.f.path;
        for (const seg of path) if (!SAFE_PROP.test(seg)) throw new Error(`internal: unsafe field name ${seg}`);
        const access = `r.${path.join('?.')}`;
        return e.k === 'present' ? `(${access} != null)` : `(${access} ?? ${zeroCode(e.t)})`;
      }
      case 'var':
        return `v${e.slot}`;
      case 'now':
        return 'now';
      case 'not':
        return `!${g(e.x)}`;
      case 'neg':
        return e.t.k === 'int' ? `rt.chkI(-${g(e.x)})` : `(-${g(e.x)})`;
      case 'and':
      case 'or':
        if (canThrow(e.l)) return `rt.${e.k}(() => ${g(e.l, pos)}, () => ${g(e.r, pos)})`;
        return `(${g(e.l, pos)} ${e.k === 'and' ? '&&' : '||'} ${g(e.r, pos)})`;
      case 'cond':
        return `(${g(e.c)} ? ${g(e.a, pos)} : ${g(e.b, pos)})`;
      case 'arith': {
        const l = g(e.l);
        const r = g(e.r);
        switch (e.t.k) {
          case 'int':
          case 'uint': {
            const chk = e.t.k === 'int' ? 'rt.chkI' : 'rt.chkU';
            if (e.op === '/') return `${chk}(rt.divI(${l}, ${r}))`;
            if (e.op === '%') return `rt.modI(${l}, ${r})`;
            return `${chk}(${l} ${e.op} ${r})`;
          }
          case 'bytes':
            return `rt.concatBytes(${l}, ${r})`;
          case 'list':
            return `rt.catL(${l}, ${r})`;
          case 'string':
            return `rt.catS(${l}, ${r})`;
          default:
            return `(${l} ${e.op} ${r})`;
        }
      }
      case 'cmp':
        if (e.l.t.k === 'bytes') return `(rt.cmpBytes(${g(e.l)}, ${g(e.r)}) ${e.op} 0)`;
        return `(${g(e.l)} ${e.op} ${g(e.r)})`;
      case 'eq':
        if (pos && SCALAR_EQ.has(e.l.t.k) && SCALAR_EQ.has(e.r.t.k)) {
          const entry = (x: TExpr): x is Extract<TExpr, { k: 'index' }> => x.k === 'index' && x.x.t.k === 'map' && !canThrow(x.x) && !canThrow(x.i);
          const [m, v] = entry(e.l) ? [e.l, e.r] : entry(e.r) ? [e.r, e.l] : [null, null];
          if (m && v && !canThrow(v)) return `rt.${e.neg ? 'neKey' : 'eqKey'}(${g(m.x)}, ${g(m.i)}, ${g(v)})`;
        }
        if (SCALAR_EQ.has(e.l.t.k) && SCALAR_EQ.has(e.r.t.k)) return `(${g(e.l)} ${e.neg ? '!==' : '==='} ${g(e.r)})`;
        return `${e.neg ? '!' : ''}rt.eq(${g(e.l)}, ${g(e.r)})`;
      case 'in':
        return e.r.t.k === 'map' ? `rt.hasKey(${g(e.r)}, ${g(e.l)})` : `rt.inList(${g(e.l)}, ${g(e.r)})`;
      case 'index':
        return e.x.t.k === 'list' ? `rt.at(${g(e.x)}, ${g(e.i)})` : `rt.getKey(${g(e.x)}, ${g(e.i)})`;
      case 'has':
        return `rt.hasKey(${g(e.x)}, ${k(e.key)})`;
      case 'list':
        return `[${e.elems.map((x) => g(x)).join(', ')}]`;
      case 'mapLit':
        return `rt.mapOf([${e.entries.map(([a, b]) => `${g(a)}, ${g(b)}`).join(', ')}])`;
      case 'call': {
        const a = e.args.map((x) => g(x));
        const from = kind(e.args[0]?.t ?? { k: 'dyn' });
        switch (e.fn) {
          case 'contains':
            return `${a[0]}.includes(${a[1]})`;
          case 'startsWith':
            return `${a[0]}.startsWith(${a[1]})`;
          case 'endsWith':
            return `${a[0]}.endsWith(${a[1]})`;
          case 'matches':
            return e.re ? `${k(e.re)}.test(${a[0]})` : `rt.matchesDyn(${a[0]}, ${a[1]})`;
          case 'size': {
            const t = e.args[0]!.t.k;
            if (t === 'string') return `rt.sizeStr(${a[0]})`;
            if (t === 'list' || t === 'bytes') return `${a[0]}.length`;
            if (t === 'map') return `rt.sizeMap(${a[0]})`;
            return `rt.sizeAny(${a[0]})`;
          }
          case 'map_get':
            return `rt.mapGet(${a[0]}, ${a[1]}, ${a[2]})`;
          case 'timestamp':
            return e.args[0]!.t.k === 'int' ? `(${a[0]} * 1000000)` : `rt.timestampDyn(${a[0]})`;
          case 'duration':
            return `rt.durationDyn(${a[0]})`;
          case 'int':
            return `rt.intOf(${a[0]}, ${from})`;
          case 'uint':
            return `rt.uintOf(${a[0]}, ${from})`;
          case 'double':
            return `rt.doubleOf(${a[0]}, ${from})`;
          case 'string':
            return `rt.stringOf(${a[0]}, ${from})`;
        }
        break;
      }
      case 'comp': {
        usesBudget = true;
        const v = `v${e.slot}`;
        const range = g(e.range);
        const fn = (x: TExpr): string => `(${v}) => ${g(x)}`;
        switch (e.macro) {
          case 'exists':
            return `rt.exists(${range}, st, ${fn(e.pred!)})`;
          case 'all':
            return `rt.all(${range}, st, ${fn(e.pred!)})`;
          case 'exists_one':
            return `rt.existsOne(${range}, st, ${fn(e.pred!)})`;
          case 'filter':
            return `rt.filter(${range}, st, ${fn(e.pred!)})`;
          case 'map':
            return `rt.mapList(${range}, st, ${e.pred ? fn(e.pred) : 'null'}, ${fn(e.body!)})`;
        }
      }
    }
    throw new Error('internal: unhandled node');
  };

  const body = g(expr, true);
  const decl = consts.map((_, i) => `k${i} = K[${i}]`).join(', ');
  const source = [
    '"use strict";',
    consts.length > 0 ? `const ${decl};` : '',
    'return function kflMatch(r) {',
    usesBudget ? '  const st = rt.newBudget();' : '',
    `  return ${body} === true;`,
    '};',
  ]
    .filter((l) => l !== '')
    .join('\n');
  return { source, consts };
}

/** Builds the factory once per filter; each `now` gives a matcher bound to that instant. */
export function buildFactory(expr: TExpr): { factory: MatcherFactory; source: string } {
  const { source, consts } = generate(expr);
  // The one place code is built from text; see the module comment for why it is safe.
  const make = new Function('K', 'rt', 'now', source) as (K: unknown[], runtime: typeof rt, now: number) => Matcher;
  return { factory: (now: number) => make(consts, rt, now), source };
}

export type { Value };
