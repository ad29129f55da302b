import { check, expand, type TExpr } from './checker';
import { buildFactory, type MatcherFactory } from './codegen';
import { KflError } from './errors';
import { interpret } from './interp';
import { LIMITS } from './limits';
import { parse } from './parser';
import { print } from './printer';
import type { KflRecord } from './record';

export interface CompileOptions {
  /** The instant `now()` stands for, microseconds since the epoch; default: the time of the call. */
  now?: number;
  /** Named macros usable as identifiers: name -> filter text (e.g. `https: "tls && (http || grpc)"`). */
  macros?: Readonly<Record<string, string>>;
}

/** Counters of one compiled filter's evaluations. */
export interface FilterStats {
  /** Records evaluated. */
  evaluated: number;
  /** Records that raised a runtime error (and so did not match). */
  errors: number;
  /** The last runtime error's message. */
  lastError?: string;
}

export interface CompiledFilter {
  /** The filter as given. */
  readonly filter: string;
  /**
   * Canonical text: aliases and macros replaced, whitespace and parentheses normalized;
   * compiles on its own (without macros) to the same filter. "" for an empty filter.
   */
  readonly normalized: string;
  /** Remarks for the user (legacy names used, ...). */
  readonly notes: readonly string[];
  /** Catalogue fields the filter reads, sorted. */
  readonly fields: readonly string[];
  /** The instant `now()` means here, microseconds since the epoch. */
  readonly now: number;
  /** Whether the record matches; never throws: a runtime error is counted and does not match. */
  matches(record: KflRecord): boolean;
  /** The same through the reference interpreter (slow; for tests and cross-checks). */
  interpret(record: KflRecord): boolean;
  readonly stats: FilterStats;
}

interface Program {
  normalized: string;
  notes: string[];
  fields: string[];
  expr: TExpr | null;
  slots: number;
  factory: MatcherFactory;
  source: string;
}

/** Compiled programs by (filter, macros), least recently used evicted first. */
const cache = new Map<string, Program>();

function cacheKey(filter: string, macros: Readonly<Record<string, string>> | undefined): string {
  if (!macros) return filter;
  const names = Object.keys(macros).sort();
  return `${filter}\u0000${JSON.stringify(names.map((n) => [n, macros[n]]))}`;
}

const isBlank = (s: string): boolean => /^(\s|\/\/[^\n]*)*$/.test(s);

function build(filter: string, macros: Readonly<Record<string, string>> | undefined): Program {
  if (filter.length > LIMITS.maxLength) throw new KflError('limit', `the filter is ${filter.length} characters long; the limit is ${LIMITS.maxLength}`);
  if (isBlank(filter)) return { normalized: '', notes: [], fields: [], expr: null, slots: 0, factory: () => () => true, source: '' };
  const notes: string[] = [];
  const tree = expand(parse(filter), { macros }, notes);
  const checked = check(tree);
  const { factory, source } = buildFactory(checked.expr);
  return { normalized: print(tree), notes, fields: checked.fields, expr: checked.expr, slots: checked.slots, factory, source };
}

function program(filter: string, macros: Readonly<Record<string, string>> | undefined): Program {
  const key = cacheKey(filter, macros);
  let p = cache.get(key);
  if (p) {
    cache.delete(key);
    cache.set(key, p);
    return p;
  }
  try {
    p = build(filter, macros);
  } catch (e) {
    if (e instanceof KflError) throw e;
    // A RangeError from a pathological input that slipped past the limits is still the filter's fault.
    throw new KflError('limit', `the filter could not be compiled: ${(e as Error).message}`);
  }
  cache.set(key, p);
  if (cache.size > LIMITS.cacheSize) cache.delete(cache.keys().next().value!);
  return p;
}

/**
 * Parses, checks and compiles a KFL2 filter. Throws `KflError` (with line, column and, for
 * unknown names, a suggestion) when the filter is refused. Compiling the same text again is a
 * cache hit; `now` is bound per call, so a cached filter with `now()` still means "now".
 */
export function compile(filter: string, opts: CompileOptions = {}): CompiledFilter {
  const p = program(filter, opts.macros);
  const now = opts.now ?? Date.now() * 1000;
  const fn = p.factory(now);
  const stats: FilterStats = { evaluated: 0, errors: 0 };
  return {
    filter,
    normalized: p.normalized,
    notes: p.notes,
    fields: p.fields,
    now,
    stats,
    matches(record: KflRecord): boolean {
      stats.evaluated++;
      try {
        return fn(record);
      } catch (e) {
        stats.errors++;
        stats.lastError = (e as Error).message;
        return false;
      }
    },
    interpret(record: KflRecord): boolean {
      if (p.expr === null) return true;
      try {
        return interpret(p.expr, record, now, p.slots);
      } catch {
        return false;
      }
    },
  };
}

/** The canonical text of a filter (see `CompiledFilter.normalized`); throws `KflError` like `compile`. */
export function normalize(filter: string, opts: Pick<CompileOptions, 'macros'> = {}): string {
  return program(filter, opts.macros).normalized;
}

/** The generated JavaScript of a filter, for debugging and the injection tests. */
export function generatedSource(filter: string, opts: Pick<CompileOptions, 'macros'> = {}): string {
  return program(filter, opts.macros).source;
}

/** Empties the compile cache (tests). */
export function clearCache(): void {
  cache.clear();
}

export function cacheSize(): number {
  return cache.size;
}
