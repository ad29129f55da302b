/**
 * The error catalogue of mcp-core. A TrafficSource reports failures as `TrafficSourceError`
 * with one of these codes; tools turn them into `isError` results the model can act on.
 */

export const ERROR_CODES = {
  /** A tool argument is wrong; `field` names it. */
  INVALID_ARGUMENT: 'invalid_argument',
  /** No worker could be reached. */
  UNAVAILABLE: 'unavailable',
  /** Workers did not answer within the deadline. */
  DEADLINE_EXCEEDED: 'deadline_exceeded',
  /** The capability exists in the contract but this deployment does not provide it yet. */
  UNIMPLEMENTED: 'unimplemented',
  NOT_FOUND: 'not_found',
  /** Something with that name exists already (a snapshot); `field` names the argument. */
  ALREADY_EXISTS: 'already_exists',
  /** The deployment cannot do this as configured (e.g. a worker that keeps no packets). */
  FAILED_PRECONDITION: 'failed_precondition',
  /** The answer would exceed a configured limit (e.g. the hub's maximum export size). */
  RESOURCE_EXHAUSTED: 'resource_exhausted',
  CANCELLED: 'cancelled',
  INTERNAL: 'internal',
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export class TrafficSourceError extends Error {
  override readonly name = 'TrafficSourceError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options: { field?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.field = options.field;
  }
  readonly field: string | undefined;
}

/** Thrown when a tool definition is invalid at registration time. */
export class ToolDefinitionError extends Error {
  override readonly name = 'ToolDefinitionError';
}
