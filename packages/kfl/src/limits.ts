/**
 * Bounds on what a filter may cost. Filters come from AI assistants and users over MCP and run
 * on every worker against every stored entry, so size, nesting and per-record work are capped
 * and a filter over a cap is refused with a message that names it.
 */
export const LIMITS = {
  /** Characters of filter text (UTF-16 code units). */
  maxLength: 4096,
  /** Nesting of sub-expressions (parentheses, operators, calls). */
  maxDepth: 64,
  /** Syntax-tree nodes, macros expanded. */
  maxNodes: 1000,
  /** Macro iterations (exists, all, map, ...) per record; beyond it the record does not match. */
  maxIterations: 10_000,
  /**
   * Characters of a string, elements of a list or bytes built by `+` (chained macros could
   * otherwise double a value per step); over it the record does not match.
   */
  maxValueSize: 1_048_576,
  /** Characters of a regular expression given to `matches`. */
  maxRegexLength: 1024,
  /** Filters whose compiled form is kept (least recently used first out). */
  cacheSize: 256,
};
