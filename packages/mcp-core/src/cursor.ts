import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';

/**
 * Opaque, self-contained pagination cursors: base64url of `{"v":1,"t":tool,"q":query,"o":offset}`.
 * Everything needed to fetch the next page travels in the cursor, so the server keeps no state
 * (a session-less MCP revision, or several hub replicas, need nothing more). A cursor that does
 * not decode, names another tool, has another version or a bad query is a JSON-RPC
 * invalid-params error (-32602), as the MCP specification asks for invalid cursors.
 */

export const CURSOR_VERSION = 1;

/** Longest cursor accepted, in characters: a real one is a few hundred. */
const MAX_CURSOR_CHARS = 4096;

export interface DecodedCursor<Q> {
  query: Q;
  offset: number;
}

interface CursorBody {
  v: number;
  t: string;
  q: unknown;
  o: number;
}

export function encodeCursor(tool: string, query: object, offset: number): string {
  const body: CursorBody = { v: CURSOR_VERSION, t: tool, q: query, o: offset };
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
}

export function invalidCursor(reason: string): McpError {
  return new McpError(ErrorCode.InvalidParams, `Invalid cursor: ${reason}. Use the nextCursor of the previous result unchanged, or call again without cursor.`);
}

/**
 * Decodes a cursor issued by `encodeCursor` for `tool`; `checkQuery` returns the typed query or
 * undefined when it is malformed. Throws McpError(InvalidParams) for anything else.
 */
export function decodeCursor<Q>(tool: string, cursor: string, checkQuery: (q: unknown) => Q | undefined): DecodedCursor<Q> {
  if (cursor.length === 0 || cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalidCursor('not a cursor this server issued');
  let body: Partial<CursorBody>;
  try {
    body = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Partial<CursorBody>;
  } catch {
    throw invalidCursor('not a cursor this server issued');
  }
  if (typeof body !== 'object' || body === null) throw invalidCursor('not a cursor this server issued');
  if (body.v !== CURSOR_VERSION) throw invalidCursor(`unsupported cursor version ${JSON.stringify(body.v)}`);
  if (body.t !== tool) throw invalidCursor(`issued by ${JSON.stringify(body.t)}, not ${tool}`);
  if (typeof body.o !== 'number' || !Number.isSafeInteger(body.o) || body.o < 0) throw invalidCursor('bad offset');
  const query = checkQuery(body.q);
  if (query === undefined) throw invalidCursor('bad query');
  return { query, offset: body.o };
}
