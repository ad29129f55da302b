/**
 * The one error type of the package. Every refusal (syntax, unknown field, type mismatch,
 * limit exceeded, bad regex or duration literal) is a `KflError` with a stable code and, when
 * it concerns a place in the filter, its 1-based line and column, so callers (the hub's
 * `apply_filter`, MCP tools) can show where the filter went wrong.
 */

export const KFL_ERROR_CODES = ['syntax', 'unknown-field', 'unknown-function', 'type', 'limit', 'regex', 'literal', 'macro'] as const;
export type KflErrorCode = (typeof KFL_ERROR_CODES)[number];

/** A 1-based position in the filter text. */
export interface Position {
  line: number;
  column: number;
}

export class KflError extends Error {
  override readonly name = 'KflError';
  readonly code: KflErrorCode;
  /** 1-based; 0 when the error is about the filter as a whole (e.g. its length). */
  readonly line: number;
  readonly column: number;
  /** The message without the position and suggestion. */
  readonly detail: string;
  /** A replacement that would probably fix the filter (a field or function name). */
  readonly suggestion?: string;

  constructor(code: KflErrorCode, detail: string, pos?: Position, suggestion?: string) {
    const at = pos && pos.line > 0 ? ` at ${pos.line}:${pos.column}` : '';
    const hint = suggestion !== undefined ? `; did you mean "${suggestion}"?` : '';
    super(`${detail}${at}${hint}`);
    this.code = code;
    this.detail = detail;
    this.line = pos?.line ?? 0;
    this.column = pos?.column ?? 0;
    if (suggestion !== undefined) this.suggestion = suggestion;
  }

  toJSON(): { code: KflErrorCode; message: string; line: number; column: number; suggestion?: string } {
    return { code: this.code, message: this.message, line: this.line, column: this.column, ...(this.suggestion !== undefined ? { suggestion: this.suggestion } : {}) };
  }
}

/**
 * Raised while evaluating a filter against one record (division by zero, missing map key,
 * iteration budget spent, ...). Never escapes `matches`: the record does not match and the
 * compiled filter counts it.
 *
 * Deliberately not an `Error`: a missing map key is common (`request.headers["x"]` on entries
 * without that header) and capturing a stack trace per record made such filters ~100x slower.
 */
export class KflRuntimeError {
  readonly name: string = 'KflRuntimeError';
  constructor(readonly message: string) {}
  toString(): string {
    return `${this.name}: ${this.message}`;
  }
}

/** The per-record iteration budget ran out: aborts the evaluation, never absorbed by `||`/`&&`. */
export class KflBudgetError extends KflRuntimeError {
  override readonly name: string = 'KflBudgetError';
}
