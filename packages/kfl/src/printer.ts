import type { BinaryOp, Literal, Node } from './ast';

/**
 * Prints a syntax tree as canonical CEL text: single spaces around binary operators, double
 * quotes, parentheses only where precedence needs them. Parsing the output gives the same tree,
 * which is what makes `normalized` safe to ship to the workers and to compose with other
 * filters.
 */

const PREC: Record<BinaryOp, number> = { '||': 2, '&&': 3, '==': 4, '!=': 4, '<': 4, '<=': 4, '>': 4, '>=': 4, in: 4, '+': 5, '-': 5, '*': 6, '/': 6, '%': 6 };
const UNARY = 7;
const MEMBER = 8;

function prec(n: Node): number {
  switch (n.kind) {
    case 'cond':
      return 1;
    case 'binary':
      return PREC[n.op];
    case 'unary':
      return UNARY;
    case 'lit':
      // A negative number reads as a unary minus when it is the operand of a member access.
      return (n.lit.type === 'int' || n.lit.type === 'double') && (n.lit.value < 0 || Object.is(n.lit.value, -0)) ? UNARY : 9;
    default:
      return 9;
  }
}

export function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f || (c >= 0x80 && c < 0xa0) || c === 0x2028 || c === 0x2029) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}

function literal(l: Literal): string {
  switch (l.type) {
    case 'int':
      return Object.is(l.value, -0) ? '0' : String(l.value);
    case 'uint':
      return `${l.value}u`;
    case 'double': {
      if (Number.isNaN(l.value)) return 'double("NaN")';
      if (!Number.isFinite(l.value)) return l.value > 0 ? 'double("Infinity")' : 'double("-Infinity")';
      const s = String(l.value);
      return /[.e]/.test(s) ? s.replace('e+', 'e') : `${s}.0`;
    }
    case 'string':
      return quote(l.value);
    case 'bytes':
      return `b"${[...l.value].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('')}"`;
    case 'bool':
      return String(l.value);
    case 'null':
      return 'null';
  }
}

export function print(n: Node): string {
  const wrap = (x: Node, min: number): string => (prec(x) >= min ? print(x) : `(${print(x)})`);
  switch (n.kind) {
    case 'lit':
      return literal(n.lit);
    case 'ident':
      return n.name;
    case 'select':
      return `${wrap(n.operand, MEMBER)}.${n.field}`;
    case 'index':
      return `${wrap(n.operand, MEMBER)}[${print(n.index)}]`;
    case 'call':
      return `${n.target ? `${wrap(n.target, MEMBER)}.` : ''}${n.fn}(${n.args.map(print).join(', ')})`;
    case 'list':
      return `[${n.elems.map(print).join(', ')}]`;
    case 'map':
      return `{${n.entries.map((e) => `${print(e.key)}: ${print(e.value)}`).join(', ')}}`;
    case 'unary': {
      // `!!x` and `--x` parse as repeated unary operators; a literal after "-" must keep its own sign apart.
      const inner = n.operand;
      const sameOp = inner.kind === 'unary' && inner.op === n.op;
      if (sameOp) return `${n.op}${print(inner)}`;
      const s = wrap(inner, MEMBER);
      return n.op === '-' && s.startsWith('-') ? `-(${s})` : `${n.op}${s}`;
    }
    case 'binary': {
      const p = PREC[n.op];
      return `${wrap(n.left, p)} ${n.op} ${wrap(n.right, p + 1)}`;
    }
    case 'cond':
      return `${wrap(n.cond, 2)} ? ${wrap(n.then, 2)} : ${print(n.else)}`;
  }
}
