import type { Node } from './ast';
import { ALIASES, FIELDS, FUNCTIONS } from './catalogue';
import { compile, type CompiledFilter } from './compile';
import { KflError } from './errors';
import { parse } from './parser';
import { print, quote } from './printer';
import type { KflRecord } from './record';

/**
 * Hub-side composition: a configured global filter, named macros, and restriction clauses
 * (today a namespace restriction; later one per role) combined with the user's filter into
 * one filter for the workers.
 *
 * A restriction must hold whatever the user writes. Two independent guards make sure:
 * - every part is parsed and printed on its own and then parenthesized, so no user text can
 *   close a parenthesis or reach across `&&` (`true || x` stays inside its own parentheses);
 * - `matches` ANDs the separately compiled parts rather than trusting the joined text, and the
 *   joined text is re-parsed and checked to be exactly the conjunction of the parts.
 */

export interface FilterPolicy {
  /** ANDed into every query. */
  global?: string;
  /** Named macros usable as identifiers in any filter (e.g. `https`: `tls && (http || grpc)`). */
  macros?: Readonly<Record<string, string>>;
  /** Clauses every result must satisfy (role and namespace restrictions). */
  restrictions?: readonly string[];
}

export interface ComposedFilter {
  /** One self-contained KFL2 filter (no macros, no aliases) to send to the workers; "" = all. */
  readonly text: string;
  /** Restrictions, then the global filter, then the user's filter (empty ones left out). */
  readonly parts: readonly CompiledFilter[];
  /** The user's filter alone (its notes and fields are what the user should see). */
  readonly user: CompiledFilter;
  readonly notes: readonly string[];
  matches(record: KflRecord): boolean;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const RESERVED = new Set(['true', 'false', 'null', 'in', ...FIELDS.map((f) => f.name.split('.')[0]!), ...ALIASES.map((a) => a.name.split('.')[0]!), ...FUNCTIONS.map((f) => f.name)]);

/** Validates a policy when it is configured (not at the first query); throws `KflError` naming the bad part. */
export function validatePolicy(policy: FilterPolicy): void {
  for (const [name, body] of Object.entries(policy.macros ?? {})) {
    if (!IDENT.test(name)) throw new KflError('macro', `macro name "${name}" is not an identifier`);
    if (RESERVED.has(name)) throw new KflError('macro', `macro name "${name}" is already a field, function or keyword`);
    try {
      compile(body, { macros: policy.macros });
    } catch (e) {
      if (e instanceof KflError) throw new KflError('macro', `macro "${name}": ${e.message}`);
      throw e;
    }
  }
  const named: [string, string][] = [...(policy.global !== undefined ? [['global filter', policy.global] as [string, string]] : []), ...(policy.restrictions ?? []).map((r, i): [string, string] => [`restriction ${i + 1}`, r])];
  for (const [what, text] of named) {
    try {
      compile(text, { macros: policy.macros });
    } catch (e) {
      if (e instanceof KflError) throw new KflError(e.code, `${what}: ${e.message}`);
      throw e;
    }
  }
}

/** Flattens a tree's top-level `&&` chain. */
function conjuncts(n: Node): Node[] {
  return n.kind === 'binary' && n.op === '&&' ? [...conjuncts(n.left), ...conjuncts(n.right)] : [n];
}

/**
 * Composes the user's filter with a policy. Throws `KflError` for a bad user filter (positions
 * refer to the user's text) and for a bad policy.
 */
export function composeFilter(userFilter: string, policy: FilterPolicy = {}, opts: { now?: number } = {}): ComposedFilter {
  const now = opts.now ?? Date.now() * 1000;
  const macros = policy.macros;
  const user = compile(userFilter, { now, macros });
  const policyParts = [...(policy.restrictions ?? []), ...(policy.global !== undefined ? [policy.global] : [])].map((t) => compile(t, { now, macros }));
  const parts = [...policyParts, user].filter((p) => p.normalized !== '');
  const text = parts.map((p) => `(${p.normalized})`).join(' && ');
  if (text !== '') {
    // Self-check: the joined text must be exactly the conjunction of the parts.
    const got = conjuncts(parse(text)).map(print);
    const want = parts.flatMap((p) => conjuncts(parse(p.normalized)).map(print));
    if (got.length !== want.length || got.some((g, i) => g !== want[i])) throw new Error('internal: composed filter does not split back into its parts');
  }
  return {
    text,
    parts,
    user,
    notes: user.notes,
    matches(record: KflRecord): boolean {
      for (const p of parts) if (!p.matches(record)) return false;
      return true;
    },
  };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A restriction to traffic with at least one side in one of these namespaces. */
export function namespaceRestriction(namespaces: readonly string[]): string {
  if (namespaces.length === 0) return 'false';
  for (const ns of namespaces) if (!DNS_LABEL.test(ns) || ns.length > 63) throw new KflError('literal', `"${ns}" is not a Kubernetes namespace name`);
  return `namespaces.exists(ns, ns in [${namespaces.map(quote).join(', ')}])`;
}
