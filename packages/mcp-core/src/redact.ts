/**
 * Redaction of what the server logs to clients (`notifications/message`): log lines carry error
 * texts and arguments, which can carry credentials seen in traffic (a filter on an
 * Authorization header, a body preview in an error). Masks header and parameter values of the
 * usual credential names, bearer and basic tokens, JWTs, and `user:password@` in URLs.
 */
const RULES: [RegExp, string][] = [
  [/\b(authorization|proxy-authorization)(["']?\s*[:=]\s*["']?)(?:(bearer|basic|digest|negotiate)\s+)?[^\s"',;]+/gi, '$1$2$3 [REDACTED]'],
  [/\b(cookie|set-cookie|x-api-key|api[-_]?key|access[-_]?token|refresh[-_]?token|token|secret|password|passwd|pwd|session[-_]?id)(["']?\s*[:=]\s*["']?)[^\s"',;&]+/gi, '$1$2[REDACTED]'],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/-]{8,}=*/gi, '$1 [REDACTED]'],
  [/\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, '[REDACTED JWT]'],
  [/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+:[^/\s@]+@/gi, '$1[REDACTED]@'],
];

export function redact(text: string): string {
  let out = text;
  for (const [re, to] of RULES) out = out.replace(re, to);
  return out.replace(/ {2,}\[REDACTED\]/g, ' [REDACTED]');
}

/** Redacts every string inside a JSON-like value. */
export function redactValue(v: unknown): unknown {
  if (typeof v === 'string') return redact(v);
  if (Array.isArray(v)) return v.map(redactValue);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, redactValue(x)]));
  return v;
}
