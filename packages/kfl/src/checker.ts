import { qualifiedName, startPos, type Node } from './ast';
import { ALIASES, FIELDS, FUNCTIONS, alias, field, isFieldPrefix, type ResolvedField } from './catalogue';
import { KflError, type Position } from './errors';
import { LIMITS } from './limits';
import { parse } from './parser';
import { compileRe2, parseDuration, parseTimestamp, type Value } from './runtime';
import { closest } from './suggest';
import { T, isNumeric, list, map, sameType, typeName, unify, type Type } from './types';

/**
 * Name resolution and type checking. Two passes over the syntax tree:
 *
 * 1. `expand` replaces legacy aliases with their KFL2 expressions and named macros with their
 *    bodies (comprehension variables shadow both), collecting notes. Its output is what
 *    `normalized` prints, so a normalized filter needs neither aliases nor macros.
 * 2. `check` resolves every name against the catalogue and types every node, giving the typed
 *    tree (`TExpr`) that the compiler and the interpreter both run.
 */

export type Builtin = 'contains' | 'startsWith' | 'endsWith' | 'matches' | 'size' | 'map_get' | 'timestamp' | 'duration' | 'int' | 'uint' | 'double' | 'string';
export type MacroKind = 'exists' | 'all' | 'exists_one' | 'map' | 'filter';
export type ArithOp = '+' | '-' | '*' | '/' | '%';
export type CmpOp = '<' | '<=' | '>' | '>=';

export type TExpr = { t: Type; pos: Position } & (
  | { k: 'const'; v: Value }
  | { k: 'field'; f: ResolvedField }
  | { k: 'var'; slot: number }
  | { k: 'now' }
  | { k: 'not'; x: TExpr }
  | { k: 'neg'; x: TExpr }
  | { k: 'and'; l: TExpr; r: TExpr }
  | { k: 'or'; l: TExpr; r: TExpr }
  | { k: 'cond'; c: TExpr; a: TExpr; b: TExpr }
  | { k: 'arith'; op: ArithOp; l: TExpr; r: TExpr }
  | { k: 'cmp'; op: CmpOp; l: TExpr; r: TExpr }
  | { k: 'eq'; neg: boolean; l: TExpr; r: TExpr }
  | { k: 'in'; l: TExpr; r: TExpr }
  | { k: 'index'; x: TExpr; i: TExpr }
  | { k: 'call'; fn: Builtin; args: TExpr[]; re?: RegExp }
  | { k: 'has'; x: TExpr; key: string }
  | { k: 'present'; f: ResolvedField }
  | { k: 'comp'; macro: MacroKind; range: TExpr; slot: number; pred: TExpr | null; body: TExpr | null }
  | { k: 'list'; elems: TExpr[] }
  | { k: 'mapLit'; entries: [TExpr, TExpr][] }
);

const MACROS = new Set<string>(['exists', 'all', 'exists_one', 'map', 'filter']);
const HEADER_MAPS = new Set(['request.headers', 'response.headers']);
const BUILTIN_NAMES = FUNCTIONS.map((f) => f.name);
const NAME_CANDIDATES = [...FIELDS.map((f) => f.name), ...ALIASES.map((a) => a.name)];

export interface ExpandOptions {
  /** Named macros: identifier -> filter text. */
  macros?: Readonly<Record<string, string>>;
}

/** Pass 1: aliases and named macros replaced. */
export function expand(root: Node, opts: ExpandOptions, notes: string[]): Node {
  const aliasTrees = new Map<string, Node>();
  const macroTrees = new Map<string, Node>();
  const macros = opts.macros ?? {};
  let nodes = 0;
  const go = (n: Node, scope: ReadonlySet<string>, stack: readonly string[]): Node => {
    if (++nodes > LIMITS.maxNodes) throw new KflError('limit', `the filter has more than ${LIMITS.maxNodes} nodes with its macros expanded`, n.pos);
    const q = qualifiedName(n);
    if (q !== null) {
      const root = q.split('.')[0]!;
      if (!scope.has(root)) {
        const a = alias(q);
        if (a) {
          if (!notes.includes(a.note)) notes.push(a.note);
          let t = aliasTrees.get(q);
          if (!t) aliasTrees.set(q, (t = parse(a.replacement)));
          return reposition(t, startPos(n));
        }
        if (n.kind === 'ident' && Object.prototype.hasOwnProperty.call(macros, n.name) && !field(n.name)) {
          if (stack.includes(n.name)) throw new KflError('macro', `macro "${n.name}" refers to itself (${[...stack, n.name].join(' -> ')})`, n.pos);
          let t = macroTrees.get(n.name);
          if (!t) {
            try {
              t = parse(macros[n.name]!);
            } catch (e) {
              if (e instanceof KflError) throw new KflError('macro', `macro "${n.name}": ${e.message}`, n.pos);
              throw e;
            }
            macroTrees.set(n.name, t);
          }
          return go(reposition(t, n.pos), new Set(), [...stack, n.name]);
        }
      }
    }
    // Header maps have lower-case names; a constant key written otherwise is lower-cased, with a note.
    const headerKey = (mapNode: Node, key: Node): Node => {
      const q = qualifiedName(mapNode);
      if (q === null || !HEADER_MAPS.has(q) || scope.has(q.split('.')[0]!) || key.kind !== 'lit' || key.lit.type !== 'string') return key;
      const lower = key.lit.value.toLowerCase();
      if (lower === key.lit.value) return key;
      const note = `header names are lower-case: ${JSON.stringify(key.lit.value)} was read as ${JSON.stringify(lower)}`;
      if (!notes.includes(note)) notes.push(note);
      return { ...key, lit: { type: 'string', value: lower } };
    };
    switch (n.kind) {
      case 'lit':
      case 'ident':
        return n;
      case 'select':
        return { ...n, operand: go(n.operand, scope, stack) };
      case 'index':
        return { ...n, operand: go(n.operand, scope, stack), index: go(headerKey(n.operand, n.index), scope, stack) };
      case 'call': {
        const target = n.target ? go(n.target, scope, stack) : null;
        const v = n.args[0];
        if (target && MACROS.has(n.fn) && v && v.kind === 'ident' && n.args.length >= 2) {
          const inner = new Set(scope).add(v.name);
          return { ...n, target, args: [v, ...n.args.slice(1).map((a) => go(a, inner, stack))] };
        }
        if (!target && n.fn === 'map_get' && n.args.length === 3) {
          const [m, key, d] = n.args as [Node, Node, Node];
          return { ...n, args: [go(m, scope, stack), go(headerKey(m, key), scope, stack), go(d, scope, stack)] };
        }
        if (!target && n.fn === 'has') {
          // has(a.b) names a field: only its operand is an expression, unless the whole name is a legacy alias.
          const arg = (a: Node): Node => {
            const q = qualifiedName(a);
            if (a.kind !== 'select' || (q !== null && alias(q) && !scope.has(q.split('.')[0]!))) return go(a, scope, stack);
            return { ...a, operand: go(a.operand, scope, stack) };
          };
          return { ...n, args: n.args.map(arg) };
        }
        return { ...n, target, args: n.args.map((a) => go(a, scope, stack)) };
      }
      case 'list':
        return { ...n, elems: n.elems.map((e) => go(e, scope, stack)) };
      case 'map':
        return { ...n, entries: n.entries.map((e) => ({ key: go(e.key, scope, stack), value: go(e.value, scope, stack) })) };
      case 'unary':
        return { ...n, operand: go(n.operand, scope, stack) };
      case 'binary': {
        const left = n.op === 'in' ? headerKey(n.right, n.left) : n.left;
        return { ...n, left: go(left, scope, stack), right: go(n.right, scope, stack) };
      }
      case 'cond':
        return { ...n, cond: go(n.cond, scope, stack), then: go(n.then, scope, stack), else: go(n.else, scope, stack) };
    }
  };
  return go(root, new Set(), []);
}

/** A copy of a replacement tree with every position set to the place it replaces. */
function reposition(n: Node, pos: Position): Node {
  const r = (x: Node): Node => reposition(x, pos);
  switch (n.kind) {
    case 'lit':
    case 'ident':
      return { ...n, pos };
    case 'select':
      return { ...n, pos, operand: r(n.operand) };
    case 'index':
      return { ...n, pos, operand: r(n.operand), index: r(n.index) };
    case 'call':
      return { ...n, pos, target: n.target ? r(n.target) : null, args: n.args.map(r) };
    case 'list':
      return { ...n, pos, elems: n.elems.map(r) };
    case 'map':
      return { ...n, pos, entries: n.entries.map((e) => ({ key: r(e.key), value: r(e.value) })) };
    case 'unary':
      return { ...n, pos, operand: r(n.operand) };
    case 'binary':
      return { ...n, pos, left: r(n.left), right: r(n.right) };
    case 'cond':
      return { ...n, pos, cond: r(n.cond), then: r(n.then), else: r(n.else) };
  }
}

interface Scope {
  readonly vars: ReadonlyMap<string, { slot: number; t: Type }>;
}

export interface Checked {
  expr: TExpr;
  /** Catalogue fields the filter reads. */
  fields: string[];
  /** Comprehension variable slots used. */
  slots: number;
}

const typeErr = (msg: string, pos: Position): never => {
  throw new KflError('type', msg, pos);
};

/** Pass 2: the typed tree. The result must be a bool. */
export function check(root: Node): Checked {
  const fields = new Set<string>();
  let slots = 0;

  const describeOperand = (n: Node, t: Type): string => {
    const q = qualifiedName(n);
    if (n.kind === 'lit') return `${JSON.stringify(n.lit.type === 'bytes' ? 'bytes' : n.lit.value)} is ${typeName(t)}`;
    return q !== null ? `${q} is ${typeName(t)}` : `${typeName(t)}`;
  };

  const resolveQualified = (q: string, n: Node): TExpr => {
    const f = field(q);
    if (f) {
      fields.add(f.name);
      return { k: 'field', t: f.t, pos: startPos(n), f };
    }
    // The longest catalogue field that is a prefix: the rest selects map keys (`request.headers.host`).
    const parts = q.split('.');
    for (let i = parts.length - 1; i >= 1; i--) {
      const base = field(parts.slice(0, i).join('.'));
      if (!base) continue;
      let cur: TExpr = { k: 'field', t: base.t, pos: startPos(n), f: base };
      fields.add(base.name);
      for (const key of parts.slice(i)) cur = selectKey(cur, key, startPos(n));
      return cur;
    }
    if (isFieldPrefix(q)) {
      const under = FIELDS.filter((x) => x.name.startsWith(`${q}.`)).map((x) => x.name);
      return typeErr(`"${q}" is a group of fields, not a value; use one of ${under.slice(0, 6).join(', ')}${under.length > 6 ? ', ...' : ''}`, startPos(n));
    }
    const s = closest(q, NAME_CANDIDATES);
    const suggestion = s === undefined ? undefined : (alias(s)?.replacement ?? s);
    throw new KflError('unknown-field', `unknown field "${q}"`, startPos(n), suggestion);
  };

  const selectKey = (x: TExpr, key: string, pos: Position): TExpr => {
    if (x.t.k !== 'map' || !sameType(x.t.key, T.string)) return typeErr(`cannot select ".${key}" on ${typeName(x.t)}`, pos);
    return { k: 'index', t: x.t.val, pos, x, i: { k: 'const', t: T.string, pos, v: key } };
  };

  const expectType = (e: TExpr, want: Type, what: string): void => {
    if (!sameType(e.t, want)) typeErr(`${what} must be ${typeName(want)}, not ${typeName(e.t)}`, e.pos);
  };

  const go = (n: Node, sc: Scope): TExpr => {
    switch (n.kind) {
      case 'lit': {
        const l = n.lit;
        return { k: 'const', t: T[l.type], pos: n.pos, v: l.value };
      }
      case 'ident': {
        const v = sc.vars.get(n.name);
        if (v) return { k: 'var', t: v.t, pos: n.pos, slot: v.slot };
        return resolveQualified(n.name, n);
      }
      case 'select': {
        const q = qualifiedName(n);
        if (q !== null && !sc.vars.has(q.split('.')[0]!)) return resolveQualified(q, n);
        return selectKey(go(n.operand, sc), n.field, n.pos);
      }
      case 'index': {
        const x = go(n.operand, sc);
        const i = go(n.index, sc);
        if (x.t.k === 'list') {
          if (i.t.k !== 'int' && i.t.k !== 'uint' && i.t.k !== 'dyn') typeErr(`a list index must be int, not ${typeName(i.t)}`, i.pos);
          return { k: 'index', t: x.t.elem, pos: n.pos, x, i };
        }
        if (x.t.k === 'map') {
          if (!sameType(i.t, x.t.key)) typeErr(`a key of ${typeName(x.t)} must be ${typeName(x.t.key)}, not ${typeName(i.t)}`, i.pos);
          return { k: 'index', t: x.t.val, pos: n.pos, x, i };
        }
        return typeErr(`cannot index ${describeOperand(n.operand, x.t)}; only lists and maps can be indexed`, n.pos);
      }
      case 'list': {
        const elems = n.elems.map((e) => go(e, sc));
        let et: Type = T.dyn;
        for (const e of elems) {
          if (!sameType(et, e.t)) typeErr(`list elements must all have one type: ${typeName(et)} and ${typeName(e.t)}`, e.pos);
          et = unify(et, e.t);
        }
        return { k: 'list', t: list(et), pos: n.pos, elems };
      }
      case 'map': {
        let vt: Type = T.dyn;
        const entries: [TExpr, TExpr][] = n.entries.map((en) => {
          const k = go(en.key, sc);
          const v = go(en.value, sc);
          if (k.t.k !== 'string') typeErr(`map keys must be strings in KFL, not ${typeName(k.t)}`, k.pos);
          if (!sameType(vt, v.t)) typeErr(`map values must all have one type: ${typeName(vt)} and ${typeName(v.t)}`, v.pos);
          vt = unify(vt, v.t);
          return [k, v];
        });
        return { k: 'mapLit', t: map(T.string, vt), pos: n.pos, entries };
      }
      case 'unary': {
        const x = go(n.operand, sc);
        if (n.op === '!') {
          if (x.t.k !== 'bool' && x.t.k !== 'dyn') typeErr(`"!" needs a bool, but ${describeOperand(n.operand, x.t)}`, n.pos);
          return { k: 'not', t: T.bool, pos: n.pos, x };
        }
        if (x.t.k !== 'int' && x.t.k !== 'double' && x.t.k !== 'duration') typeErr(`"-" needs an int, double or duration, but ${describeOperand(n.operand, x.t)}`, n.pos);
        return { k: 'neg', t: x.t, pos: n.pos, x };
      }
      case 'cond': {
        const c = go(n.cond, sc);
        if (c.t.k !== 'bool' && c.t.k !== 'dyn') typeErr(`the condition of "? :" must be bool, not ${typeName(c.t)}`, startPos(n.cond));
        const a = go(n.then, sc);
        const b = go(n.else, sc);
        if (!sameType(a.t, b.t)) typeErr(`both branches of "? :" must have one type: ${typeName(a.t)} and ${typeName(b.t)}`, n.pos);
        return { k: 'cond', t: unify(a.t, b.t), pos: n.pos, c, a, b };
      }
      case 'binary':
        return binary(n, sc);
      case 'call':
        return call(n, sc);
    }
  };

  const binary = (n: Extract<Node, { kind: 'binary' }>, sc: Scope): TExpr => {
    const l = go(n.left, sc);
    const r = go(n.right, sc);
    const pos = n.pos;
    const mismatch = (verb: string): never => {
      let hint = '';
      const lit = n.right.kind === 'lit' ? n.right.lit : n.left.kind === 'lit' ? n.left.lit : null;
      const other = n.right.kind === 'lit' ? l.t : r.t;
      if (lit?.type === 'string' && isNumeric(other) && /^-?[0-9]+(\.[0-9]+)?$/.test(lit.value)) hint = `; write ${lit.value} without quotes`;
      else if (lit && (lit.type === 'int' || lit.type === 'double') && other.k === 'string') hint = `; write "${lit.value}" in quotes`;
      else if (isNumeric(l.t) && isNumeric(r.t)) hint = '; convert one side with int() or double()';
      else if (verb === 'compare' && (l.t.k === 'list' || r.t.k === 'list') && (l.t.k !== 'list' || r.t.k !== 'list')) {
        const [lst, one] = l.t.k === 'list' ? [n.left, n.right] : [n.right, n.left];
        hint = `; to test membership write ${qualifiedName(one) ?? (one.kind === 'lit' && one.lit.type === 'string' ? JSON.stringify(one.lit.value) : 'x')} in ${qualifiedName(lst) ?? 'the list'}`;
      }
      else if ((l.t.k === 'timestamp' && r.t.k === 'int') || (l.t.k === 'int' && r.t.k === 'timestamp')) hint = '; write the time as timestamp("2026-03-14T22:00:00Z") or timestamp(<Unix seconds>)';
      else if ((l.t.k === 'duration' && r.t.k === 'int') || (l.t.k === 'int' && r.t.k === 'duration')) hint = '; durations are not numbers: elapsed_time is int microseconds, compare it with e.g. 5000000';
      const says = [describeOperand(n.left, l.t), describeOperand(n.right, r.t)].filter((d) => d.includes(' is '));
      return typeErr(`cannot ${verb} ${typeName(l.t)} and ${typeName(r.t)}${says.length > 0 ? ` (${says.join(', ')})` : ''}${hint}`, pos);
    };
    switch (n.op) {
      case '&&':
      case '||': {
        for (const [e, side] of [[l, n.left], [r, n.right]] as const) {
          if (e.t.k !== 'bool' && e.t.k !== 'dyn') typeErr(`"${n.op}" needs bool operands, but ${describeOperand(side, e.t)}`, startPos(side));
        }
        return { k: n.op === '&&' ? 'and' : 'or', t: T.bool, pos, l, r };
      }
      case '==':
      case '!=': {
        const ok = sameType(l.t, r.t) || (isNumeric(l.t) && isNumeric(r.t));
        if (!ok) mismatch('compare');
        return { k: 'eq', t: T.bool, pos, neg: n.op === '!=', l, r };
      }
      case '<':
      case '<=':
      case '>':
      case '>=': {
        const ordered = ['string', 'bool', 'timestamp', 'duration', 'bytes'];
        const ok = (isNumeric(l.t) && isNumeric(r.t)) || (sameType(l.t, r.t) && (ordered.includes(l.t.k) || l.t.k === 'dyn' || r.t.k === 'dyn'));
        if (!ok) mismatch('order');
        return { k: 'cmp', t: T.bool, pos, op: n.op, l, r };
      }
      case 'in': {
        if (r.t.k === 'list') {
          if (!sameType(l.t, r.t.elem) && !(isNumeric(l.t) && isNumeric(r.t.elem))) typeErr(`"in" looks for ${typeName(l.t)} in ${describeOperand(n.right, r.t)}`, pos);
        } else if (r.t.k === 'map') {
          if (!sameType(l.t, r.t.key)) typeErr(`"in" looks for a ${typeName(l.t)} key in ${describeOperand(n.right, r.t)}`, pos);
        } else if (r.t.k === 'string' && l.t.k === 'string') {
          typeErr(`"in" needs a list or map on the right; for substrings use ${qualifiedName(n.right) ?? 'text'}.contains(...)`, pos);
        } else typeErr(`"in" needs a list or map on the right, but ${describeOperand(n.right, r.t)}`, pos);
        return { k: 'in', t: T.bool, pos, l, r };
      }
      case '+':
      case '-':
      case '*':
      case '/':
      case '%': {
        const op = n.op;
        const a = l.t.k;
        const b = r.t.k;
        let t: Type | null = null;
        if (a === b && (a === 'int' || a === 'uint' || (a === 'double' && op !== '%'))) t = l.t;
        else if (op === '+' && a === b && (a === 'string' || a === 'bytes')) t = l.t;
        else if (op === '+' && l.t.k === 'list' && r.t.k === 'list' && sameType(l.t, r.t)) t = unify(l.t, r.t);
        else if (op === '+' && ((a === 'timestamp' && b === 'duration') || (a === 'duration' && b === 'timestamp'))) t = T.timestamp;
        else if ((op === '+' || op === '-') && a === 'duration' && b === 'duration') t = T.duration;
        else if (op === '-' && a === 'timestamp' && b === 'duration') t = T.timestamp;
        else if (op === '-' && a === 'timestamp' && b === 'timestamp') t = T.duration;
        else if (a === 'dyn' || b === 'dyn') t = a === 'dyn' ? r.t : l.t;
        if (t === null) mismatch(`apply "${op}" to`);
        return { k: 'arith', t: t!, pos, op, l, r };
      }
    }
  };

  const call = (n: Extract<Node, { kind: 'call' }>, sc: Scope): TExpr => {
    const pos = n.pos;
    const argc = (want: number | number[]): void => {
      const ws = typeof want === 'number' ? [want] : want;
      if (!ws.includes(n.args.length)) typeErr(`${n.fn}() takes ${ws.join(' or ')} argument${ws.length === 1 && ws[0] === 1 ? '' : 's'}, got ${n.args.length}`, pos);
    };
    if (n.target && MACROS.has(n.fn)) return macro(n, sc);
    if (!n.target && n.fn === 'has') {
      argc(1);
      const a = n.args[0]!;
      // KFL2's top-level variables are fields too: has(status_code) is accepted (strict CEL wants a selection).
      if (a.kind === 'ident' && !sc.vars.has(a.name)) {
        const f = field(a.name);
        if (f) {
          fields.add(f.name);
          return { k: 'present', t: T.bool, pos, f };
        }
      }
      if (a.kind !== 'select') return typeErr('has() takes a field selection, e.g. has(request.headers.authorization)', pos);
      const q = qualifiedName(a);
      if (q !== null && !sc.vars.has(q.split('.')[0]!)) {
        const f = field(q);
        if (f) {
          fields.add(f.name);
          return { k: 'present', t: T.bool, pos, f };
        }
      }
      const x = go(a.operand, sc);
      if (x.t.k !== 'map') typeErr(`has() on ${typeName(x.t)}: only fields and map keys can be tested`, pos);
      return { k: 'has', t: T.bool, pos, x, key: a.field };
    }
    const target = n.target ? go(n.target, sc) : null;
    const args = n.args.map((a) => go(a, sc));
    const recv = target ? [target, ...args] : args;
    const mk = (fn: Builtin, t: Type, as: TExpr[] = recv): TExpr => ({ k: 'call', t, pos, fn, args: as });
    const needString = (e: TExpr, what: string): void => expectType(e, T.string, what);
    switch (n.fn) {
      case 'contains':
      case 'startsWith':
      case 'endsWith':
      case 'matches': {
        if (!target && n.fn !== 'matches') return typeErr(`${n.fn} is a method: write text.${n.fn}("...")`, pos);
        if (recv.length !== 2) return typeErr(`${n.fn}() takes one argument, got ${recv.length - 1}`, pos);
        if (n.fn === 'contains' && (recv[0]!.t.k === 'list' || recv[0]!.t.k === 'map')) {
          const what = qualifiedName(n.target!) ?? 'the collection';
          return typeErr(`${what} is ${typeName(recv[0]!.t)}: test membership with x in ${what}, or ${what}.exists(v, v.contains("..."))`, pos);
        }
        needString(recv[0]!, `the receiver of ${n.fn}()`);
        needString(recv[1]!, `the argument of ${n.fn}()`);
        const out = mk(n.fn, T.bool);
        const pat = recv[1]!;
        if (n.fn === 'matches' && pat.k === 'const') {
          try {
            return { ...out, re: compileRe2(pat.v as string) } as TExpr;
          } catch (e) {
            throw new KflError('regex', (e as Error).message, pat.pos);
          }
        }
        return out;
      }
      case 'size': {
        if (recv.length !== 1) return typeErr(`size() takes one argument, got ${recv.length}`, pos);
        const k = recv[0]!.t.k;
        if (!['string', 'bytes', 'list', 'map', 'dyn'].includes(k)) typeErr(`size() of ${typeName(recv[0]!.t)}; it takes a string, bytes, list or map`, pos);
        return mk('size', T.int);
      }
      case 'map_get': {
        if (target) return typeErr('map_get is a function: map_get(map, key, default)', pos);
        argc(3);
        const [m, k, d] = args as [TExpr, TExpr, TExpr];
        if (m.t.k !== 'map') return typeErr(`the first argument of map_get() must be a map, not ${typeName(m.t)}`, m.pos);
        if (!sameType(k.t, m.t.key)) typeErr(`the key of map_get() must be ${typeName(m.t.key)}, not ${typeName(k.t)}`, k.pos);
        if (!sameType(d.t, m.t.val)) typeErr(`the default of map_get() must be ${typeName(m.t.val)} like the map's values, not ${typeName(d.t)}`, d.pos);
        return mk('map_get', unify(m.t.val, d.t), args);
      }
      case 'now':
        if (target) return typeErr('now() is a function', pos);
        argc(0);
        return { k: 'now', t: T.timestamp, pos };
      case 'timestamp':
      case 'duration': {
        if (target) return typeErr(`${n.fn}() is a function`, pos);
        argc(1);
        const a = args[0]!;
        const t = n.fn === 'timestamp' ? T.timestamp : T.duration;
        if (n.fn === 'timestamp' && a.t.k === 'timestamp') return a;
        if (n.fn === 'duration' && a.t.k === 'duration') return a;
        if (n.fn === 'timestamp' && a.t.k === 'int') return mk('timestamp', t, args);
        needString(a, `the argument of ${n.fn}()`);
        if (a.k === 'const') {
          try {
            return { k: 'const', t, pos, v: n.fn === 'timestamp' ? parseTimestamp(a.v as string) : parseDuration(a.v as string) };
          } catch (e) {
            throw new KflError('literal', (e as Error).message, a.pos);
          }
        }
        return mk(n.fn, t, args);
      }
      case 'int':
      case 'uint':
      case 'double':
      case 'string': {
        if (target) return typeErr(`${n.fn}() is a function: ${n.fn}(x)`, pos);
        argc(1);
        const from = args[0]!.t.k;
        const allowed: Record<string, string[]> = {
          int: ['int', 'uint', 'double', 'string', 'timestamp', 'duration', 'dyn'],
          uint: ['int', 'uint', 'double', 'string', 'dyn'],
          double: ['int', 'uint', 'double', 'string', 'dyn'],
          string: ['int', 'uint', 'double', 'string', 'bool', 'bytes', 'timestamp', 'duration', 'dyn'],
        };
        if (!allowed[n.fn]!.includes(from)) typeErr(`${n.fn}() cannot convert ${typeName(args[0]!.t)}`, pos);
        return mk(n.fn, T[n.fn], args);
      }
      default: {
        if (['lower', 'upper', 'lowerAscii', 'upperAscii', 'toLowerCase', 'toUpperCase'].includes(n.fn)) {
          return typeErr(`KFL2 has no ${n.fn}(); for a case-insensitive test use text.matches("(?i)...")`, pos);
        }
        const s = closest(n.fn, BUILTIN_NAMES);
        throw new KflError('unknown-function', `unknown function "${n.fn}"`, pos, s);
      }
    }
  };

  const macro = (n: Extract<Node, { kind: 'call' }>, sc: Scope): TExpr => {
    const kind = n.fn as MacroKind;
    const v = n.args[0];
    const nargs = kind === 'map' ? [2, 3] : [2];
    if (!nargs.includes(n.args.length) || !v || v.kind !== 'ident') {
      return typeErr(`${kind}() takes a variable name and ${kind === 'map' ? 'an expression (or a predicate and an expression)' : 'a predicate'}, e.g. list.${kind}(x, ${kind === 'map' ? 'x + 1' : 'x > 0'})`, n.pos);
    }
    const range = go(n.target!, sc);
    let vt: Type;
    if (range.t.k === 'list') vt = range.t.elem;
    else if (range.t.k === 'map') vt = range.t.key;
    else return typeErr(`${kind}() runs over a list or map, not ${typeName(range.t)}`, n.pos);
    const slot = slots++;
    const vars = new Map(sc.vars);
    vars.set(v.name, { slot, t: vt });
    const inner: Scope = { vars };
    const rest = n.args.slice(1).map((a) => go(a, inner));
    const boolArg = (e: TExpr): TExpr => {
      if (e.t.k !== 'bool' && e.t.k !== 'dyn') typeErr(`the predicate of ${kind}() must be bool, not ${typeName(e.t)}`, e.pos);
      return e;
    };
    if (kind === 'map') {
      const pred = rest.length === 2 ? boolArg(rest[0]!) : null;
      const body = rest[rest.length - 1]!;
      return { k: 'comp', t: list(body.t), pos: n.pos, macro: kind, range, slot, pred, body };
    }
    const pred = boolArg(rest[0]!);
    return { k: 'comp', t: kind === 'filter' ? list(vt) : T.bool, pos: n.pos, macro: kind, range, slot, pred, body: null };
  };

  const expr = go(root, { vars: new Map() });
  if (expr.t.k !== 'bool' && expr.t.k !== 'dyn') {
    throw new KflError('type', `a filter must be a bool expression, but this one is ${typeName(expr.t)}`, startPos(root));
  }
  return { expr, fields: [...fields].sort(), slots };
}
