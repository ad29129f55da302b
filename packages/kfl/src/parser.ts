import type { BinaryOp, Node } from './ast';
import { KflError, type Position } from './errors';
import { LIMITS } from './limits';

/**
 * A hand-written lexer and recursive-descent parser for the CEL grammar (cel-spec langdef):
 *
 *   Expr    = Or ["?" Or ":" Expr]          Or  = And {"||" And}      And = Rel {"&&" Rel}
 *   Rel     = Add {("<"|"<="|">="|">"|"=="|"!="|"in") Add}
 *   Add     = Mul {("+"|"-") Mul}           Mul = Unary {("*"|"/"|"%") Unary}
 *   Unary   = Member | "!" {"!"} Member | "-" {"-"} Member
 *   Member  = Primary {"." IDENT ["(" [Args] ")"] | "[" Expr "]"}
 *   Primary = IDENT ["(" [Args] ")"] | "(" Expr ")" | "[" [Args] [","] "]" | "{" [Inits] [","] "}" | literal
 *
 * Message construction (`Type{f: v}`) and the leading-dot namespace syntax are not part of KFL.
 * Depth and node count are bounded while parsing, so hostile input cannot exhaust the stack.
 */

type TokKind = 'ident' | 'int' | 'uint' | 'double' | 'string' | 'bytes' | 'op' | 'eof';
interface Token {
  kind: TokKind;
  text: string;
  pos: Position;
  num?: number;
  str?: string;
  bytes?: Uint8Array;
}

const OPS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '+', '-', '*', '/', '%', '?', ':', '.', ',', '(', ')', '[', ']', '{', '}'];
const SIMPLE_ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', "'": "'", '"': '"', '`': '`', '?': '?' };

class Lexer {
  private i = 0;
  private line = 1;
  private lineStart = 0;
  constructor(private readonly src: string) {}

  private pos(at = this.i): Position {
    return { line: this.line, column: at - this.lineStart + 1 };
  }

  private fail(msg: string, pos: Position = this.pos()): never {
    throw new KflError('syntax', msg, pos);
  }

  private skipSpace(): void {
    const s = this.src;
    while (this.i < s.length) {
      const c = s[this.i]!;
      if (c === '\n') {
        this.i++;
        this.line++;
        this.lineStart = this.i;
      } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f') this.i++;
      else if (c === '/' && s[this.i + 1] === '/') {
        while (this.i < s.length && s[this.i] !== '\n') this.i++;
      } else break;
    }
  }

  tokens(): Token[] {
    const out: Token[] = [];
    for (;;) {
      this.skipSpace();
      if (out.length > LIMITS.maxNodes * 4) this.fail(`the filter has more than ${LIMITS.maxNodes * 4} tokens`);
      if (this.i >= this.src.length) {
        out.push({ kind: 'eof', text: '', pos: this.pos() });
        return out;
      }
      out.push(this.next());
    }
  }

  private next(): Token {
    const s = this.src;
    const start = this.i;
    const pos = this.pos();
    const c = s[start]!;
    // String and bytes literals, with r/b prefixes in either order.
    const pre = /^([rRbB]{0,2})(['"])/.exec(s.slice(start, start + 3));
    if (pre && pre[1]!.length <= 2 && !/^(rr|bb)$/i.test(pre[1]!)) {
      const prefix = pre[1]!.toLowerCase();
      const raw = prefix.includes('r');
      const isBytes = prefix.includes('b');
      this.i = start + prefix.length;
      const str = this.stringBody(raw, pos);
      const text = s.slice(start, this.i);
      if (isBytes) return { kind: 'bytes', text, pos, bytes: bytesOf(str) };
      return { kind: 'string', text, pos, str };
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = start + 1;
      while (j < s.length && /[A-Za-z0-9_]/.test(s[j]!)) j++;
      this.i = j;
      return { kind: 'ident', text: s.slice(start, j), pos };
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(s[start + 1] ?? ''))) return this.number(pos);
    for (const op of OPS) {
      if (s.startsWith(op, start)) {
        this.i += op.length;
        return { kind: 'op', text: op, pos };
      }
    }
    if (c === '=' ) this.fail('unexpected "=": use "==" to compare', pos);
    if (c === '&' || c === '|') this.fail(`unexpected "${c}": use "${c}${c}"`, pos);
    return this.fail(`unexpected character ${JSON.stringify(c)}`, pos);
  }

  private number(pos: Position): Token {
    const s = this.src;
    const start = this.i;
    const rest = s.slice(start);
    let m = /^0[xX][0-9a-fA-F]+/.exec(rest);
    if (m) {
      this.i += m[0].length;
      return this.intToken(m[0], BigInt(m[0]), pos);
    }
    m = /^(?:[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)/.exec(rest);
    if (m) {
      this.i += m[0].length;
      if (/^[A-Za-z_]/.test(s.slice(this.i))) this.fail(`malformed number "${m[0]}${s[this.i]}"`, pos);
      return { kind: 'double', text: m[0], pos, num: Number(m[0]) };
    }
    m = /^[0-9]+/.exec(rest)!;
    this.i += m[0].length;
    return this.intToken(m[0], BigInt(m[0]), pos);
  }

  private intToken(text: string, v: bigint, pos: Position): Token {
    const s = this.src;
    let kind: TokKind = 'int';
    if (s[this.i] === 'u' || s[this.i] === 'U') {
      this.i++;
      kind = 'uint';
    }
    if (/^[A-Za-z_0-9]/.test(s.slice(this.i))) this.fail(`malformed number "${text}${s[this.i]}"`, pos);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`integer ${text} is larger than ${Number.MAX_SAFE_INTEGER} (KFL integers are exact up to 2^53)`, pos);
    return { kind, text, pos, num: Number(v) };
  }

  /** Reads a quoted body starting at the quote; returns its value. */
  private stringBody(raw: boolean, pos: Position): string {
    const s = this.src;
    const q = s[this.i]!;
    const triple = s.startsWith(q.repeat(3), this.i);
    const close = triple ? q.repeat(3) : q;
    this.i += close.length;
    let out = '';
    for (;;) {
      if (this.i >= s.length) this.fail('unterminated string', pos);
      if (s.startsWith(close, this.i)) {
        this.i += close.length;
        return out;
      }
      const c = s[this.i]!;
      if (c === '\n') {
        if (!triple) this.fail('newline in a string (use a triple-quoted string or \\n)', pos);
        this.i++;
        this.line++;
        this.lineStart = this.i;
        out += c;
        continue;
      }
      if (c === '\\' && !raw) {
        out += this.escape();
        continue;
      }
      if (c === '\\' && raw) {
        // A raw string keeps the backslash; an escaped quote still does not end it.
        out += c;
        this.i++;
        if (this.i < s.length && s[this.i] === q && !triple) {
          out += q;
          this.i++;
        }
        continue;
      }
      out += c;
      this.i++;
    }
  }

  private escape(): string {
    const s = this.src;
    const at = this.pos();
    const e = s[this.i + 1];
    if (e === undefined) this.fail('unterminated escape', at);
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      this.i += 2;
      return simple;
    }
    const hex = (n: number): string => {
      const h = s.slice(this.i + 2, this.i + 2 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(h)) this.fail(`bad escape \\${e}: expected ${n} hex digits`, at);
      const cp = parseInt(h, 16);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) this.fail(`bad escape \\${e}${h}: not a Unicode scalar value`, at);
      this.i += 2 + n;
      return String.fromCodePoint(cp);
    };
    if (e === 'x' || e === 'X') return hex(2);
    if (e === 'u') return hex(4);
    if (e === 'U') return hex(8);
    if (/[0-3]/.test(e)) {
      const o = s.slice(this.i + 1, this.i + 4);
      if (!/^[0-3][0-7]{2}$/.test(o)) this.fail(`bad octal escape \\${o}`, at);
      this.i += 4;
      return String.fromCharCode(parseInt(o, 8));
    }
    return this.fail(`unknown escape \\${e}`, at);
  }
}

/**
 * A bytes literal's value: when every character is below U+0100 (escapes \xHH and octal give
 * such code units) each character is one byte; otherwise the text is UTF-8.
 */
function bytesOf(str: string): Uint8Array {
  // eslint-disable-next-line no-control-regex
  return new Uint8Array(Buffer.from(str, /^[\x00-\xff]*$/.test(str) ? 'latin1' : 'utf8'));
}

export class Parser {
  private toks: Token[] = [];
  private p = 0;
  private depth = 0;
  private nodes = 0;

  parse(src: string): Node {
    this.toks = new Lexer(src).tokens();
    this.p = 0;
    const e = this.expr();
    const t = this.peek();
    if (t.kind !== 'eof') this.fail(`unexpected ${describe(t)}`, t.pos);
    return e;
  }

  private peek(): Token {
    return this.toks[this.p]!;
  }
  private take(): Token {
    return this.toks[this.p++]!;
  }
  private isOp(text: string): boolean {
    const t = this.peek();
    return t.kind === 'op' && t.text === text;
  }
  private expect(text: string, what: string): Token {
    const t = this.peek();
    if (t.kind !== 'op' || t.text !== text) this.fail(`expected "${text}" ${what}, found ${describe(t)}`, t.pos);
    return this.take();
  }
  private fail(msg: string, pos: Position): never {
    throw new KflError('syntax', msg, pos);
  }
  private node<T extends Node>(n: T): T {
    if (++this.nodes > LIMITS.maxNodes) throw new KflError('limit', `the filter has more than ${LIMITS.maxNodes} nodes`, n.pos);
    return n;
  }
  private enter(pos: Position): void {
    if (++this.depth > LIMITS.maxDepth) throw new KflError('limit', `the filter nests deeper than ${LIMITS.maxDepth} levels`, pos);
  }

  private expr(): Node {
    this.enter(this.peek().pos);
    const c = this.or();
    let out = c;
    if (this.isOp('?')) {
      const q = this.take();
      const a = this.or();
      this.expect(':', 'in the conditional "c ? a : b"');
      const b = this.expr();
      out = this.node({ kind: 'cond', pos: q.pos, cond: c, then: a, else: b });
    }
    this.depth--;
    return out;
  }

  private binaryLevel(ops: readonly string[], next: () => Node): Node {
    let l = next();
    for (;;) {
      const t = this.peek();
      const isIn = t.kind === 'ident' && t.text === 'in' && ops.includes('in');
      if (!isIn && !(t.kind === 'op' && ops.includes(t.text))) return l;
      this.take();
      this.enter(t.pos);
      const r = next();
      this.depth--;
      l = this.node({ kind: 'binary', pos: t.pos, op: t.text as BinaryOp, left: l, right: r });
    }
  }
  private or(): Node {
    return this.binaryLevel(['||'], () => this.and());
  }
  private and(): Node {
    return this.binaryLevel(['&&'], () => this.rel());
  }
  private rel(): Node {
    return this.binaryLevel(['<', '<=', '>', '>=', '==', '!=', 'in'], () => this.add());
  }
  private add(): Node {
    return this.binaryLevel(['+', '-'], () => this.mul());
  }
  private mul(): Node {
    return this.binaryLevel(['*', '/', '%'], () => this.unary());
  }

  private unary(): Node {
    const ops: Token[] = [];
    while (this.isOp('!') || this.isOp('-')) {
      const t = this.take();
      if (ops.length > 0 && ops[0]!.text !== t.text) this.fail(`"${t.text}" cannot follow "${ops[0]!.text}" without parentheses`, t.pos);
      ops.push(t);
      this.enter(t.pos);
    }
    const numberNext = this.peek().kind === 'int' || this.peek().kind === 'double';
    let m = this.member();
    // A minus directly before a number literal belongs to the literal (as in CEL); `-(5)` stays an operator.
    if (numberNext && ops.length > 0 && ops[0]!.text === '-' && m.kind === 'lit' && (m.lit.type === 'int' || m.lit.type === 'double')) {
      const t = ops.pop()!;
      m = { kind: 'lit', pos: t.pos, lit: { type: m.lit.type, value: -m.lit.value } };
      this.depth--;
    }
    while (ops.length > 0) {
      const t = ops.pop()!;
      m = this.node({ kind: 'unary', pos: t.pos, op: t.text as '!' | '-', operand: m });
      this.depth--;
    }
    return m;
  }

  private member(): Node {
    let n = this.primary();
    for (;;) {
      if (this.isOp('.')) {
        const dot = this.take();
        const id = this.take();
        if (id.kind !== 'ident') this.fail(`expected a field or method name after ".", found ${describe(id)}`, id.pos);
        if (this.isOp('(')) {
          this.take();
          const args = this.args(')');
          n = this.node({ kind: 'call', pos: id.pos, target: n, fn: id.text, args });
        } else n = this.node({ kind: 'select', pos: dot.pos, operand: n, field: id.text });
      } else if (this.isOp('[')) {
        const b = this.take();
        const idx = this.expr();
        this.expect(']', 'to close the index');
        n = this.node({ kind: 'index', pos: b.pos, operand: n, index: idx });
      } else return n;
    }
  }

  private args(close: string): Node[] {
    const out: Node[] = [];
    if (this.isOp(close)) {
      this.take();
      return out;
    }
    for (;;) {
      out.push(this.expr());
      if (this.isOp(',')) {
        this.take();
        if (this.isOp(close) && close !== ')') {
          this.take();
          return out;
        }
        continue;
      }
      this.expect(close, close === ')' ? 'to close the argument list' : 'to close the list');
      return out;
    }
  }

  private primary(): Node {
    const t = this.take();
    switch (t.kind) {
      case 'int':
      case 'uint':
      case 'double':
        return this.node({ kind: 'lit', pos: t.pos, lit: { type: t.kind, value: t.num! } });
      case 'string':
        return this.node({ kind: 'lit', pos: t.pos, lit: { type: 'string', value: t.str! } });
      case 'bytes':
        return this.node({ kind: 'lit', pos: t.pos, lit: { type: 'bytes', value: t.bytes! } });
      case 'ident': {
        if (t.text === 'true' || t.text === 'false') return this.node({ kind: 'lit', pos: t.pos, lit: { type: 'bool', value: t.text === 'true' } });
        if (t.text === 'null') return this.node({ kind: 'lit', pos: t.pos, lit: { type: 'null', value: null } });
        if (t.text === 'in') this.fail('unexpected "in"', t.pos);
        // CEL's other reserved words (`namespace`, `package`, ...) are left to name resolution,
        // which can suggest the field meant (`namespaces`) instead of a bare "reserved word".
        if (this.isOp('(')) {
          this.take();
          const args = this.args(')');
          return this.node({ kind: 'call', pos: t.pos, target: null, fn: t.text, args });
        }
        return this.node({ kind: 'ident', pos: t.pos, name: t.text });
      }
      case 'op': {
        if (t.text === '(') {
          const e = this.expr();
          this.expect(')', 'to close "("');
          return e;
        }
        if (t.text === '[') return this.node({ kind: 'list', pos: t.pos, elems: this.args(']') });
        if (t.text === '{') return this.mapLiteral(t);
        return this.fail(`unexpected ${describe(t)}`, t.pos);
      }
      case 'eof':
        return this.fail('unexpected end of filter', t.pos);
    }
  }

  private mapLiteral(open: Token): Node {
    const entries: { key: Node; value: Node }[] = [];
    while (!this.isOp('}')) {
      const key = this.expr();
      this.expect(':', 'between a map key and its value');
      const value = this.expr();
      entries.push({ key, value });
      if (this.isOp(',')) this.take();
      else if (!this.isOp('}')) this.fail(`expected "," or "}" in the map, found ${describe(this.peek())}`, this.peek().pos);
    }
    this.take();
    return this.node({ kind: 'map', pos: open.pos, entries });
  }
}

function describe(t: Token): string {
  if (t.kind === 'eof') return 'the end of the filter';
  return `"${t.text}"`;
}

/** Parses CEL text into a syntax tree; throws `KflError` (code `syntax` or `limit`). */
export function parse(src: string): Node {
  return new Parser().parse(src);
}

