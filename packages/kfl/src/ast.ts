import type { Position } from './errors';

/**
 * The syntax tree of a CEL expression as written. Every node has the position of its first
 * character (binary operators: of the operator), for error messages.
 */

export type Literal =
  | { type: 'int' | 'uint' | 'double'; value: number }
  | { type: 'string'; value: string }
  | { type: 'bytes'; value: Uint8Array }
  | { type: 'bool'; value: boolean }
  | { type: 'null'; value: null };

export const BINARY_OPS = ['||', '&&', '==', '!=', '<', '<=', '>', '>=', 'in', '+', '-', '*', '/', '%'] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

export type Node =
  | { kind: 'lit'; pos: Position; lit: Literal }
  | { kind: 'ident'; pos: Position; name: string }
  | { kind: 'select'; pos: Position; operand: Node; field: string }
  | { kind: 'index'; pos: Position; operand: Node; index: Node }
  | { kind: 'call'; pos: Position; target: Node | null; fn: string; args: Node[] }
  | { kind: 'list'; pos: Position; elems: Node[] }
  | { kind: 'map'; pos: Position; entries: { key: Node; value: Node }[] }
  | { kind: 'unary'; pos: Position; op: '!' | '-'; operand: Node }
  | { kind: 'binary'; pos: Position; op: BinaryOp; left: Node; right: Node }
  | { kind: 'cond'; pos: Position; cond: Node; then: Node; else: Node };

/** `a.b.c` as "a.b.c" when the node is a chain of plain selections on an identifier. */
export function qualifiedName(n: Node): string | null {
  if (n.kind === 'ident') return n.name;
  if (n.kind === 'select') {
    const q = qualifiedName(n.operand);
    return q === null ? null : `${q}.${n.field}`;
  }
  return null;
}

/** Position of the leftmost character of a node (a binary node's own position is its operator's). */
export function startPos(n: Node): Position {
  switch (n.kind) {
    case 'binary':
      return startPos(n.left);
    case 'cond':
      return startPos(n.cond);
    case 'select':
    case 'index':
      return startPos(n.operand);
    case 'call':
      return n.target ? startPos(n.target) : n.pos;
    default:
      return n.pos;
  }
}
