import type { TExpr } from './checker';
import { KflBudgetError, KflRuntimeError } from './errors';
import { LIMITS } from './limits';
import type { KflRecord } from './record';
import * as rt from './runtime';
import type { Value, ValueMap } from './runtime';
import { zeroOf } from './types';

/**
 * The reference evaluator: walks the typed tree, one case per node kind, written for clarity
 * rather than speed. It is the oracle the compiled filters are property-tested against, so it
 * shares with them only the leaf helpers of runtime.ts (parsing, conversions, regexes), never
 * the control flow: short-circuits, error absorption and the macros are written out here.
 */

interface Env {
  rec: KflRecord;
  now: number;
  slots: Value[];
  iterations: number;
}

/** An error CEL's logic may absorb (not a spent budget, which aborts the evaluation). */
const isRuntime = (e: unknown): e is KflRuntimeError => e instanceof KflRuntimeError && !(e instanceof KflBudgetError);

function readField(rec: KflRecord, path: readonly string[]): Value | undefined {
  let v: unknown = rec;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = Object.prototype.hasOwnProperty.call(v, seg) ? (v as Record<string, unknown>)[seg] : undefined;
  }
  return v as Value | undefined;
}

function step(env: Env): void {
  if (++env.iterations > LIMITS.maxIterations) throw new KflBudgetError(`more than ${LIMITS.maxIterations} macro iterations for one record`);
}

function items(range: Value): Value[] {
  if (Array.isArray(range)) return range as Value[];
  return Object.keys(range as ValueMap);
}

function ev(e: TExpr, env: Env): Value {
  switch (e.k) {
    case 'const':
      return e.v;
    case 'field': {
      const v = readField(env.rec, e.f.path);
      return v === undefined || v === null ? (zeroOf(e.t) as Value) : v;
    }
    case 'present': {
      const v = readField(env.rec, e.f.path);
      return v !== undefined && v !== null;
    }
    case 'var':
      return env.slots[e.slot]!;
    case 'now':
      return env.now;
    case 'not':
      return !(ev(e.x, env) as boolean);
    case 'neg': {
      const v = -(ev(e.x, env) as number);
      return e.t.k === 'int' ? rt.chkI(v) : v;
    }
    case 'and':
    case 'or': {
      // CEL: an error on one side is absorbed when the other side alone decides.
      const decisive = e.k === 'or';
      let left: boolean;
      try {
        left = ev(e.l, env) as boolean;
      } catch (err) {
        if (!isRuntime(err)) throw err;
        if ((ev(e.r, env) as boolean) === decisive) return decisive;
        throw err;
      }
      if (left === decisive) return decisive;
      return ev(e.r, env) as boolean;
    }
    case 'cond':
      return (ev(e.c, env) as boolean) ? ev(e.a, env) : ev(e.b, env);
    case 'arith':
      return arith(e, ev(e.l, env), ev(e.r, env));
    case 'cmp': {
      const a = ev(e.l, env);
      const b = ev(e.r, env);
      let c: number;
      if (a instanceof Uint8Array && b instanceof Uint8Array) c = rt.cmpBytes(a, b);
      else if (typeof a === 'string' && typeof b === 'string') c = a < b ? -1 : a > b ? 1 : 0;
      else {
        const x = Number(a);
        const y = Number(b);
        if (Number.isNaN(x) || Number.isNaN(y)) return false;
        c = x < y ? -1 : x > y ? 1 : 0;
      }
      switch (e.op) {
        case '<':
          return c < 0;
        case '<=':
          return c <= 0;
        case '>':
          return c > 0;
        case '>=':
          return c >= 0;
      }
      return false;
    }
    case 'eq': {
      const same = deepEqual(ev(e.l, env), ev(e.r, env));
      return e.neg ? !same : same;
    }
    case 'in': {
      const x = ev(e.l, env);
      const c = ev(e.r, env);
      if (Array.isArray(c)) return (c as Value[]).some((v) => deepEqual(x, v));
      return typeof x === 'string' && Object.prototype.hasOwnProperty.call(c, x);
    }
    case 'index': {
      const c = ev(e.x, env);
      const i = ev(e.i, env);
      if (Array.isArray(c)) {
        const n = i as number;
        if (!Number.isInteger(n) || n < 0 || n >= c.length) throw new KflRuntimeError(`index ${n} out of range`);
        return (c as Value[])[n]!;
      }
      if (typeof i === 'string' && Object.prototype.hasOwnProperty.call(c, i)) return (c as ValueMap)[i]!;
      throw new KflRuntimeError(`no such key: ${JSON.stringify(i)}`);
    }
    case 'has': {
      const m = ev(e.x, env) as ValueMap;
      return Object.prototype.hasOwnProperty.call(m, e.key);
    }
    case 'list':
      return e.elems.map((x) => ev(x, env));
    case 'mapLit': {
      const out: Record<string, Value> = Object.create(null) as Record<string, Value>;
      for (const [k, v] of e.entries) {
        const key = ev(k, env) as string;
        if (Object.prototype.hasOwnProperty.call(out, key)) throw new KflRuntimeError(`duplicate map key ${JSON.stringify(key)}`);
        out[key] = ev(v, env);
      }
      return out;
    }
    case 'call':
      return call(e, env);
    case 'comp':
      return comprehension(e, env);
  }
}

function deepEqual(a: Value, b: Value): boolean {
  if (typeof a === 'number' || typeof b === 'number') return a === b;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.from(a).equals(Buffer.from(b));
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x as Value, b[i] as Value));
  if (Array.isArray(a) || Array.isArray(b) || a instanceof Uint8Array || b instanceof Uint8Array) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && deepEqual((a as ValueMap)[k]!, (b as ValueMap)[k]!));
}

function arith(e: Extract<TExpr, { k: 'arith' }>, a: Value, b: Value): Value {
  const t = e.t.k;
  if (t === 'string' || t === 'bytes' || t === 'list') {
    const size = (a as string | Uint8Array | Value[]).length + (b as string | Uint8Array | Value[]).length;
    if (size > LIMITS.maxValueSize) throw new KflRuntimeError(`a value built by "+" is larger than ${LIMITS.maxValueSize}`);
    if (t === 'string') return (a as string) + (b as string);
    if (t === 'bytes') return new Uint8Array([...(a as Uint8Array), ...(b as Uint8Array)]);
    return [...(a as Value[]), ...(b as Value[])];
  }
  const x = a as number;
  const y = b as number;
  let r: number;
  switch (e.op) {
    case '+':
      r = x + y;
      break;
    case '-':
      r = x - y;
      break;
    case '*':
      r = x * y;
      break;
    case '/':
      if (t === 'double') return x / y;
      if (y === 0) throw new KflRuntimeError('division by zero');
      r = Math.trunc(x / y);
      break;
    case '%':
      if (y === 0) throw new KflRuntimeError('modulus by zero');
      r = x % y;
      break;
  }
  if (t === 'int') return rt.chkI(r);
  if (t === 'uint') return rt.chkU(r);
  return r;
}

function call(e: Extract<TExpr, { k: 'call' }>, env: Env): Value {
  const args = e.args.map((a) => ev(a, env));
  const [a, b] = args;
  const from = e.args[0]!.t.k;
  switch (e.fn) {
    case 'contains':
      return (a as string).indexOf(b as string) >= 0;
    case 'startsWith':
      return (a as string).slice(0, (b as string).length) === b;
    case 'endsWith':
      return (b as string).length === 0 || (a as string).slice(-(b as string).length) === b;
    case 'matches': {
      if (e.re) return new RegExp(e.re.source, e.re.flags).test(a as string);
      let re: RegExp;
      try {
        re = rt.compileRe2(b as string);
      } catch (err) {
        throw new KflRuntimeError((err as Error).message);
      }
      return re.test(a as string);
    }
    case 'size':
      if (typeof a === 'string') return [...a].length;
      if (a instanceof Uint8Array || Array.isArray(a)) return a.length;
      return Object.keys(a as ValueMap).length;
    case 'map_get':
      return typeof b === 'string' && Object.prototype.hasOwnProperty.call(a, b) ? (a as ValueMap)[b]! : args[2]!;
    case 'timestamp':
      try {
        return from === 'int' ? (a as number) * 1e6 : rt.parseTimestamp(a as string);
      } catch (err) {
        throw new KflRuntimeError((err as Error).message);
      }
    case 'duration':
      try {
        return rt.parseDuration(a as string);
      } catch (err) {
        throw new KflRuntimeError((err as Error).message);
      }
    case 'int':
      return rt.intOf(a!, from);
    case 'uint':
      return rt.uintOf(a!, from);
    case 'double':
      return rt.doubleOf(a!, from);
    case 'string':
      return rt.stringOf(a!, from);
  }
}

function comprehension(e: Extract<TExpr, { k: 'comp' }>, env: Env): Value {
  const elems = items(ev(e.range, env));
  const run = (x: Value, body: TExpr): Value => {
    step(env);
    env.slots[e.slot] = x;
    return ev(body, env);
  };
  switch (e.macro) {
    case 'exists':
    case 'all': {
      const decisive = e.macro === 'exists';
      let error: KflRuntimeError | null = null;
      for (const x of elems) {
        try {
          if ((run(x, e.pred!) as boolean) === decisive) return decisive;
        } catch (err) {
          if (!isRuntime(err)) throw err;
          error = error ?? err;
        }
      }
      if (error) throw error;
      return !decisive;
    }
    case 'exists_one': {
      let n = 0;
      for (const x of elems) if (run(x, e.pred!) as boolean) n++;
      return n === 1;
    }
    case 'filter':
      return elems.filter((x) => run(x, e.pred!) as boolean);
    case 'map': {
      const out: Value[] = [];
      for (const x of elems) {
        if (e.pred && !(run(x, e.pred) as boolean)) continue;
        if (!e.pred) step(env);
        env.slots[e.slot] = x;
        out.push(ev(e.body!, env));
      }
      return out;
    }
  }
}

/** Evaluates a checked filter against one record; runtime errors propagate as `KflRuntimeError`. */
export function interpret(expr: TExpr, rec: KflRecord, now: number, slots: number): boolean {
  const env: Env = { rec, now, slots: new Array<Value>(slots).fill(null), iterations: 0 };
  return ev(expr, env) === true;
}
