/**
 * KFL2, Kubeshark's traffic filter language: CEL evaluated over each API call or L4 flow.
 *
 *   const f = compile('http && status_code >= 500', { macros, now });   // throws KflError
 *   f.matches(record)      // boolean, never throws (runtime errors counted in f.stats)
 *   f.normalized           // canonical self-contained text to push down to workers
 *   f.notes, f.fields      // legacy names used / header names lower-cased; catalogue fields read
 *
 * `composeFilter` ANDs policy restrictions, a global filter and the user's filter so that the
 * restrictions cannot be escaped; `renderReference` is the KFL2 reference MCP serves;
 * `KflRecord` is the record shape the worker maps entries and flows to.
 */
export { compile, normalize, generatedSource, clearCache, cacheSize, type CompileOptions, type CompiledFilter, type FilterStats } from './compile';
export { composeFilter, namespaceRestriction, validatePolicy, type FilterPolicy, type ComposedFilter } from './compose';
export { KflError, KflRuntimeError, KFL_ERROR_CODES, type KflErrorCode, type Position } from './errors';
export { FIELDS, ALIASES, FUNCTIONS, FIELD_GROUPS, field, renderReference, type FieldDef, type FieldGroup, type AliasDef } from './catalogue';
export { LIMITS } from './limits';
export { parse } from './parser';
export { print } from './printer';
export type { Node, Literal } from './ast';
export type { KflRecord, KflEndpoint, KflMessage, KflPodRef, KflNodeRef } from './record';
export { headerMap, queryMap, bodyText } from './mapping';
