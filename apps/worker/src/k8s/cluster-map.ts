import { readFileSync } from 'node:fs';
import { ObjectError, describe, isObject, parseKubeObject, type KubeKind, type KubeObject, KUBE_KINDS } from './objects';
import { ClusterResolver, type ClusterResolverOptions } from './resolver';

/**
 * A cluster map: what `kubectl get pods,services,nodes,endpointslices -A -o json` prints (a
 * `List` whose items carry their own `kind`), or the API's typed lists (`PodList`, ... whose
 * items carry none), or single objects, or several of these in a JSON array, one after the other
 * in one file (as `>>` appends them), or in several files.
 * Outside a cluster it lets a capture be replayed with the identities it had.
 *
 * A file that cannot be read or is not JSON is a `ClusterMapError`. A malformed item is reported
 * in `errors` with its path (`map.json: items[7].status.podIPs[0].ip (Pod shop/cart-0): ...`)
 * and skipped, so one bad object does not hide the rest; kinds the resolver does not use
 * (ConfigMaps, Deployments, ...) are counted in `unknownKinds` and skipped.
 */

export class ClusterMapError extends Error {
  constructor(
    message: string,
    readonly source: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ClusterMapError';
  }
}

export interface ClusterMapItemError {
  /** The file (or `<json>` for text given directly). */
  source: string;
  /** Path of the offending field within the document, e.g. `items[3].status.podIP`. */
  path: string;
  /** `Pod shop/cart-0`, when the item was readable that far. */
  item?: string;
  message: string;
}

export interface ClusterMapResult {
  resolver: ClusterResolver;
  /** Objects loaded, by kind. */
  loaded: Record<KubeKind, number>;
  /** Items skipped because the resolver has no use for their kind, by kind. */
  unknownKinds: Record<string, number>;
  errors: ClusterMapItemError[];
}

export interface LoadClusterMapOptions extends ClusterResolverOptions {
  /** Load into this resolver (e.g. a second file) instead of a new one. */
  resolver?: ClusterResolver;
  /** When the objects were seen; only ends addresses an updated pod lost. Default: now. */
  atUs?: number;
}

/** A JSON value that is a cluster map (or part of one), given directly. */
export type ClusterMapJson = Record<string, unknown> | unknown[];

/**
 * Loads one or more cluster maps into a resolver. `input` is a file path, JSON text (starting
 * with `{` or `[`), a parsed JSON value, or an array of file paths.
 */
export function loadClusterMap(input: string | readonly string[] | ClusterMapJson, opts: LoadClusterMapOptions = {}): ClusterMapResult {
  const result: ClusterMapResult = {
    resolver: opts.resolver ?? new ClusterResolver(opts),
    loaded: { Pod: 0, Service: 0, Node: 0, EndpointSlice: 0 },
    unknownKinds: {},
    errors: [],
  };
  const atUs = opts.atUs ?? Date.now() * 1000;
  const docs: { source: string; doc: unknown }[] = [];
  if (typeof input === 'string') docs.push(readDoc(input));
  else if (isStringArray(input)) for (const p of input) docs.push(readDoc(p));
  else docs.push({ source: '<json>', doc: input });
  const objects: KubeObject[] = [];
  for (const { source, doc } of docs) collect(doc, '', undefined, source, objects, result);
  for (const o of objects) result.resolver.apply(o, atUs);
  return result;
}

function isStringArray(v: readonly string[] | ClusterMapJson): v is readonly string[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string');
}

function readDoc(input: string): { source: string; doc: unknown } {
  const trimmed = input.trimStart();
  const inline = trimmed.startsWith('{') || trimmed.startsWith('[');
  const source = inline ? '<json>' : input;
  let text: string;
  if (inline) {
    text = input;
  } else {
    try {
      text = readFileSync(input, 'utf8');
    } catch (err) {
      throw new ClusterMapError(`cannot read cluster map ${input}: ${(err as Error).message}`, source, { cause: err });
    }
  }
  try {
    return { source, doc: JSON.parse(text) as unknown };
  } catch (err) {
    // `kubectl get pods -A -o json >> map.json; kubectl get svc -A -o json >> map.json` writes
    // several documents one after the other: read them as an array.
    const parts = splitJsonDocuments(text);
    if (parts !== undefined && parts.length > 1) {
      try {
        return { source, doc: parts.map((p) => JSON.parse(p) as unknown) };
      } catch {
        // Fall through to the original error, which says where the text stops being JSON.
      }
    }
    throw new ClusterMapError(`${source} is not JSON (${(err as Error).message}); write it with \`kubectl get pods,services,nodes,endpointslices -A -o json\``, source, { cause: err });
  }
}

/**
 * Splits text made of JSON objects or arrays written one after the other (whitespace between)
 * into their texts; undefined when it is not shaped like that.
 */
export function splitJsonDocuments(text: string): string[] | undefined {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      if (depth === 0) return undefined;
      inString = true;
    } else if (c === 0x7b || c === 0x5b) {
      if (depth === 0) start = i;
      depth++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth < 0) return undefined;
      if (depth === 0) out.push(text.slice(start, i + 1));
    } else if (depth === 0 && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      return undefined;
    }
  }
  return depth === 0 && !inString ? out : undefined;
}

const join = (base: string, rel: string): string => (base === '' ? rel : rel.startsWith('[') ? `${base}${rel}` : `${base}.${rel}`);

function itemName(raw: unknown): string | undefined {
  if (!isObject(raw) || !isObject(raw.metadata)) return undefined;
  const { name, namespace } = raw.metadata;
  if (typeof name !== 'string') return undefined;
  return typeof namespace === 'string' && namespace !== '' ? `${namespace}/${name}` : name;
}

function collect(doc: unknown, path: string, hint: KubeKind | undefined, source: string, out: KubeObject[], result: ClusterMapResult): void {
  if (Array.isArray(doc)) {
    doc.forEach((d, i) => collect(d, join(path, `[${i}]`), hint, source, out, result));
    return;
  }
  if (!isObject(doc)) {
    result.errors.push({ source, path: path || '(document)', message: `expected a Kubernetes object or list, got ${describe(doc)}` });
    return;
  }
  const kind = doc.kind;
  if (Array.isArray(doc.items) && (typeof kind !== 'string' || kind.endsWith('List'))) {
    // `List` (kubectl) items carry their kind; `PodList` and friends (the API) do not.
    const listOf = typeof kind === 'string' ? kind.slice(0, -'List'.length) : '';
    const itemHint = (KUBE_KINDS as readonly string[]).includes(listOf) ? (listOf as KubeKind) : hint;
    doc.items.forEach((d, i) => collect(d, join(path, `items[${i}]`), itemHint, source, out, result));
    return;
  }
  const name = itemName(doc);
  try {
    const o = parseKubeObject(doc, path || '(document)', hint);
    if (o.kind === 'unknown') {
      result.unknownKinds[o.name] = (result.unknownKinds[o.name] ?? 0) + 1;
      return;
    }
    result.loaded[o.kind]++;
    out.push(o);
  } catch (err) {
    if (!(err instanceof ObjectError)) throw err;
    const what = typeof kind === 'string' ? kind : hint;
    const item = what !== undefined && name !== undefined ? `${what} ${name}` : undefined;
    result.errors.push({ source, path: err.path, ...(item !== undefined ? { item } : {}), message: err.detail });
  }
}

/** One line per error, as a CLI prints them: `map.json: items[3].status.podIP (Pod shop/cart-0): ...`. */
export function formatClusterMapError(e: ClusterMapItemError): string {
  return `${e.source}: ${e.path}${e.item !== undefined ? ` (${e.item})` : ''}: ${e.message}`;
}
