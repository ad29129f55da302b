import { compile, composeFilter, FIELDS, KflError, namespaceRestriction, normalize, type KflRecord } from '../src';

/**
 * Random well-typed filters over random records: the compiled function and the reference
 * interpreter must agree on every record, and so must the normalized text. Seeded, so a
 * failure reproduces; the seed and the filter are in the failure message.
 */

class Rng {
  constructor(private s: number) {}
  next(): number {
    // mulberry32
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const NOW = 1_773_525_600_000_000;
const STRINGS = ['', 'a', 'GET', 'POST', '/api/x', '/health', 'prod', 'default', 'google.com', 'session:1', 'x-id', 'Ab', 'é😀'];
const INTS = [0, 1, 2, -1, 200, 404, 500, 8080, 1_000_000];
const byType = (t: string): string[] => FIELDS.filter((f) => f.type === t).map((f) => f.name);
const F = {
  bool: byType('bool'),
  int: byType('int'),
  string: byType('string'),
  list: byType('list<string>'),
  map: byType('map<string, string>'),
};

type Ty = 'bool' | 'int' | 'double' | 'string' | 'list' | 'map' | 'timestamp' | 'duration';

class Gen {
  constructor(
    private r: Rng,
    private vars: { name: string; ty: Ty }[] = [],
  ) {}
  private n = 0;

  expr(ty: Ty, d: number): string {
    const r = this.r;
    const leaf = d <= 0 || r.chance(0.25);
    const v = this.vars.filter((x) => x.ty === ty);
    if (v.length > 0 && r.chance(0.4)) return r.pick(v).name;
    switch (ty) {
      case 'bool': {
        if (leaf) return r.chance(0.8) ? r.pick(F.bool) : r.pick(['true', 'false']);
        const c = r.int(14);
        const s = (t: Ty): string => this.expr(t, d - 1);
        if (c === 0) return `(${s('bool')} && ${s('bool')})`;
        if (c === 1) return `(${s('bool')} || ${s('bool')})`;
        if (c === 2) return `!(${s('bool')})`;
        if (c === 3) return `${s('int')} ${r.pick(['==', '!=', '<', '<=', '>', '>='])} ${s('int')}`;
        if (c === 4) return `${s('string')} ${r.pick(['==', '!=', '<', '>='])} ${s('string')}`;
        if (c === 5) return `${s('string')}.${r.pick(['contains', 'startsWith', 'endsWith'])}(${s('string')})`;
        if (c === 6) return `${s('string')} in ${s('list')}`;
        if (c === 7) return `${s('string')} in ${s('map')}`;
        if (c === 8) return `(${s('bool')} ? ${s('bool')} : ${s('bool')})`;
        if (c === 9) return this.macro('bool', d);
        if (c === 10) return `${s('timestamp')} ${r.pick(['<', '>=', '=='])} ${s('timestamp')}`;
        if (c === 11) return `has(${r.pick([...F.string.filter((x) => x.includes('.')), 'request.headers.a'])})`;
        if (c === 12) return `${s('string')}.matches(${r.pick(['"^a"', '"(?i)get"', '"[0-9]+"', '"o.g"', s('string')])})`;
        return `${s('double')} ${r.pick(['<', '==', '>'])} ${s('int')}`;
      }
      case 'int': {
        if (leaf) return r.chance(0.5) ? r.pick(F.int) : String(r.pick(INTS));
        const c = r.int(6);
        const s = (t: Ty): string => this.expr(t, d - 1);
        if (c === 0) return `(${s('int')} ${r.pick(['+', '-', '*', '/', '%'])} ${s('int')})`;
        if (c === 1) return `size(${s(r.pick(['string', 'list', 'map'] as const))})`;
        if (c === 2) return `(${s('bool')} ? ${s('int')} : ${s('int')})`;
        if (c === 3) return `int(${s(r.pick(['string', 'double'] as const))})`;
        if (c === 4) return `[${s('int')}, ${s('int')}][${s('int')}]`;
        return `-${s('int')}`;
      }
      case 'double':
        if (leaf) return r.pick(['0.5', '2.0', '-1.5', '1e3']);
        return r.chance(0.5) ? `double(${this.expr('int', d - 1)})` : `(${this.expr('double', d - 1)} ${r.pick(['+', '-', '*', '/'])} ${this.expr('double', d - 1)})`;
      case 'string': {
        if (leaf) return r.chance(0.5) ? r.pick(F.string) : JSON.stringify(r.pick(STRINGS));
        const c = r.int(5);
        if (c === 0) return `(${this.expr('string', d - 1)} + ${this.expr('string', d - 1)})`;
        if (c === 1) return `${this.expr('map', d - 1)}[${this.expr('string', d - 1)}]`;
        if (c === 2) return `map_get(${this.expr('map', d - 1)}, ${this.expr('string', d - 1)}, ${this.expr('string', d - 1)})`;
        if (c === 3) return `string(${this.expr('int', d - 1)})`;
        return `${this.expr('list', d - 1)}[${this.expr('int', d - 1)}]`;
      }
      case 'list':
        if (leaf) return r.chance(0.6) ? r.pick(F.list) : `[${JSON.stringify(r.pick(STRINGS))}, ${JSON.stringify(r.pick(STRINGS))}]`;
        return r.chance(0.5) ? this.macro('list', d) : `(${this.expr('list', d - 1)} + ${this.expr('list', d - 1)})`;
      case 'map':
        if (leaf || r.chance(0.7)) return r.pick(F.map);
        return `{${JSON.stringify(r.pick(STRINGS))}: ${this.expr('string', d - 1)}}`;
      case 'timestamp':
        if (leaf) return r.pick(['timestamp', 'now()', 'timestamp("2026-03-14T21:58:00Z")']);
        return `(${this.expr('timestamp', d - 1)} ${r.pick(['+', '-'])} ${this.expr('duration', d - 1)})`;
      case 'duration':
        if (leaf) return `duration(${JSON.stringify(r.pick(['5m', '1s', '90s', '1h30m', '250ms', '0']))})`;
        return `(${this.expr('timestamp', d - 1)} - ${this.expr('timestamp', d - 1)})`;
    }
  }

  private macro(ty: 'bool' | 'list', d: number): string {
    const name = `v${this.n++}_${this.vars.length}`;
    const range = this.expr('list', d - 1);
    const inner = new Gen(this.r, [...this.vars, { name, ty: 'string' }]);
    if (ty === 'list') return `${range}.filter(${name}, ${inner.expr('bool', d - 1)})`;
    const m = this.r.pick(['exists', 'all', 'exists_one']);
    return `${range}.${m}(${name}, ${inner.expr('bool', d - 1)})`;
  }
}

function randomRecord(r: Rng): KflRecord {
  const rec: Record<string, unknown> = {};
  const set = (path: string, v: unknown): void => {
    const parts = path.split('.');
    let o = rec;
    for (const p of parts.slice(0, -1)) o = (o[p] ??= {}) as Record<string, unknown>;
    o[parts[parts.length - 1]!] = v;
  };
  for (const f of FIELDS) {
    if (!r.chance(0.45)) continue;
    switch (f.type) {
      case 'bool':
        set(f.name, r.chance(0.5));
        break;
      case 'int':
        set(f.name, r.pick(INTS));
        break;
      case 'string':
        set(f.name, r.pick(STRINGS));
        break;
      case 'timestamp':
        set(f.name, NOW + r.pick([-600, -120, 0, 60]) * 1e6);
        break;
      case 'list<string>':
        set(f.name, Array.from({ length: r.int(4) }, () => r.pick(STRINGS)));
        break;
      case 'map<string, string>': {
        const m: Record<string, string> = {};
        for (let i = r.int(4); i > 0; i--) m[r.pick(STRINGS)] = r.pick(STRINGS);
        set(f.name, m);
        break;
      }
    }
  }
  return rec as KflRecord;
}

test('compiled filters agree with the interpreter on random filters and records', () => {
  const seed = 20260314;
  const r = new Rng(seed);
  const records = Array.from({ length: 40 }, () => randomRecord(r));
  let filters = 0;
  let matched = 0;
  let errored = 0;
  let refused = 0;
  for (let i = 0; i < 1500; i++) {
    const text = new Gen(r).expr('bool', 1 + r.int(5));
    let f;
    try {
      f = compile(text, { now: NOW });
    } catch (e) {
      // The generator only writes well-typed filters: a refusal is a checker bug.
      if (!(e instanceof KflError)) throw e;
      refused++;
      if (process.env.KFL_DEBUG) console.log(text, (e as Error).message);
      continue;
    }
    filters++;
    expect(normalize(f.normalized)).toBe(f.normalized);
    const g = compile(f.normalized, { now: NOW });
    for (const rec of records) {
      const a = f.matches(rec);
      const b = f.interpret(rec);
      const c = g.matches(rec);
      if (a !== b || a !== c) throw new Error(`seed ${seed}: ${text} (normalized ${f.normalized}) gives compiled ${a}, interpreted ${b}, normalized ${c} on ${JSON.stringify(rec)}`);
      if (a) matched++;
    }
    errored += f.stats.errors;
  }
  // The generator must exercise all outcomes, or the test proves little.
  expect(refused).toBe(0);
  expect(filters).toBe(1500);
  expect(matched).toBeGreaterThan(filters * 2);
  expect(errored).toBeGreaterThan(100);
});

test('a composed filter is the restriction AND the user filter, whichever way it is evaluated', () => {
  const seed = 777;
  const r = new Rng(seed);
  const records = Array.from({ length: 40 }, () => {
    const rec = randomRecord(r);
    rec.namespaces = r.chance(0.5) ? ['team-a'] : ['team-b', 'x'];
    return rec;
  });
  const restriction = compile(namespaceRestriction(['team-a']));
  let composedMatches = 0;
  for (let i = 0; i < 300; i++) {
    const text = new Gen(r).expr('bool', 1 + r.int(4));
    const user = compile(text, { now: NOW });
    const c = composeFilter(text, { restrictions: [namespaceRestriction(['team-a'])], macros: { team: '"team-a" in namespaces' } }, { now: NOW });
    const joined = compile(c.text, { now: NOW });
    for (const rec of records) {
      const want = restriction.interpret(rec) && user.interpret(rec);
      const got = [c.matches(rec), joined.matches(rec), joined.interpret(rec)];
      if (got.some((x) => x !== want)) throw new Error(`seed ${seed}: ${text} composed as ${c.text} gives ${got.join(', ')}, expected ${want}`);
      if (want) composedMatches++;
    }
  }
  expect(composedMatches).toBeGreaterThan(300);
});
