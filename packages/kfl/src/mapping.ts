/**
 * Small pure helpers for whoever maps stored entries to `KflRecord` (the worker), so that header,
 * query and body fields mean the same on every node: the catalogue promises lower-case header
 * names with repeats joined, decoded query parameters, and bodies as bounded text.
 */

/** Header fields in wire order -> a map with lower-case names; repeated headers joined with ", " (RFC 9110). */
export function headerMap(headers: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of headers) {
    const k = name.toLowerCase();
    out[k] = Object.prototype.hasOwnProperty.call(out, k) ? `${out[k]}, ${value}` : value;
  }
  return out;
}

/** The decoded query parameters of a URL or path (`/a?x=1&y=%20`); the first value of a repeated name wins. */
export function queryMap(url: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  const q = url.indexOf('?');
  if (q < 0) return out;
  const end = url.indexOf('#', q);
  for (const part of url.slice(q + 1, end < 0 ? undefined : end).split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const rawKey = eq < 0 ? part : part.slice(0, eq);
    const rawVal = eq < 0 ? '' : part.slice(eq + 1);
    const key = decode(rawKey);
    if (!Object.prototype.hasOwnProperty.call(out, key)) out[key] = decode(rawVal);
  }
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * A body as text for `request.body`/`response.body`: UTF-8 when it decodes cleanly and has no
 * control characters other than whitespace, else "" (binary bodies are not searchable as text);
 * cut to `maxChars`.
 */
export function bodyText(body: Uint8Array | null, maxChars = 65536): string {
  if (body === null || body.length === 0) return '';
  const text = Buffer.from(body.buffer, body.byteOffset, Math.min(body.byteLength, maxChars * 4)).toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (text.includes('\ufffd') || /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text)) {
    // A multi-byte character cut by the byte bound is not binary: retry without the last 3 bytes.
    const trimmed = text.replace(/\ufffd{1,3}$/, '');
    // eslint-disable-next-line no-control-regex
    if (trimmed.includes('\ufffd') || /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(trimmed)) return '';
    return trimmed.slice(0, maxChars);
  }
  return text.slice(0, maxChars);
}
