/** The static types of KFL values (a subset of CEL's). */
export type Type =
  | { k: 'int' }
  | { k: 'uint' }
  | { k: 'double' }
  | { k: 'string' }
  | { k: 'bytes' }
  | { k: 'bool' }
  | { k: 'null' }
  | { k: 'timestamp' }
  | { k: 'duration' }
  /** Unknown element type (of an empty list or map literal); unifies with anything. */
  | { k: 'dyn' }
  | { k: 'list'; elem: Type }
  | { k: 'map'; key: Type; val: Type };

export const T = {
  int: { k: 'int' },
  uint: { k: 'uint' },
  double: { k: 'double' },
  string: { k: 'string' },
  bytes: { k: 'bytes' },
  bool: { k: 'bool' },
  null: { k: 'null' },
  timestamp: { k: 'timestamp' },
  duration: { k: 'duration' },
  dyn: { k: 'dyn' },
} as const satisfies Record<string, Type>;

export const list = (elem: Type): Type => ({ k: 'list', elem });
export const map = (key: Type, val: Type): Type => ({ k: 'map', key, val });

export function typeName(t: Type): string {
  if (t.k === 'list') return `list<${typeName(t.elem)}>`;
  if (t.k === 'map') return `map<${typeName(t.key)}, ${typeName(t.val)}>`;
  return t.k;
}

/** Parses the catalogue's type notation: `int`, `list<string>`, `map<string, string>`. */
export function parseType(s: string): Type {
  const src = s.replace(/\s+/g, '');
  let i = 0;
  const one = (): Type => {
    const m = /^[a-z]+/.exec(src.slice(i));
    if (!m) throw new Error(`bad type "${s}"`);
    i += m[0].length;
    const name = m[0];
    if (name === 'list' || name === 'map') {
      if (src[i++] !== '<') throw new Error(`bad type "${s}"`);
      const a = one();
      let out: Type;
      if (name === 'map') {
        if (src[i++] !== ',') throw new Error(`bad type "${s}"`);
        out = map(a, one());
      } else out = list(a);
      if (src[i++] !== '>') throw new Error(`bad type "${s}"`);
      return out;
    }
    if (!(name in T)) throw new Error(`bad type "${s}"`);
    return T[name as keyof typeof T];
  };
  const t = one();
  if (i !== src.length) throw new Error(`bad type "${s}"`);
  return t;
}

export const isNumeric = (t: Type): boolean => t.k === 'int' || t.k === 'uint' || t.k === 'double';

/** Equal types, `dyn` matching anything. */
export function sameType(a: Type, b: Type): boolean {
  if (a.k === 'dyn' || b.k === 'dyn') return true;
  if (a.k === 'list' && b.k === 'list') return sameType(a.elem, b.elem);
  if (a.k === 'map' && b.k === 'map') return sameType(a.key, b.key) && sameType(a.val, b.val);
  return a.k === b.k;
}

/** The more specific of two compatible types (a list literal's element type). */
export function unify(a: Type, b: Type): Type {
  if (a.k === 'dyn') return b;
  if (b.k === 'dyn') return a;
  if (a.k === 'list' && b.k === 'list') return list(unify(a.elem, b.elem));
  if (a.k === 'map' && b.k === 'map') return map(unify(a.key, b.key), unify(a.val, b.val));
  return a;
}

/** The zero value a record lacking a field of this type is read as (KFL2 semantics). */
export function zeroOf(t: Type): string | number | boolean | null | readonly unknown[] | Readonly<Record<string, unknown>> | Uint8Array {
  switch (t.k) {
    case 'int':
    case 'uint':
    case 'double':
    case 'timestamp':
    case 'duration':
      return 0;
    case 'string':
      return '';
    case 'bool':
      return false;
    case 'bytes':
      return new Uint8Array(0);
    case 'list':
      return [];
    case 'map':
      return {};
    case 'null':
    case 'dyn':
      return null;
  }
}
