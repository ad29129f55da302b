export { compile, normalize, generatedSource, clearCache, cacheSize, type CompileOptions, type CompiledFilter, type FilterStats } from './compile';
export { composeFilter, namespaceRestriction, validatePolicy, type FilterPolicy, type ComposedFilter } from './compose';
export { KflError, KflRuntimeError, KFL_ERROR_CODES, type KflErrorCode, type Position } from './errors';
export { FIELDS, ALIASES, FUNCTIONS, FIELD_GROUPS, field, renderReference, type FieldDef, type FieldGroup, type AliasDef } from './catalogue';
export { LIMITS } from './limits';
export { parse } from './parser';
export { print } from './printer';
export type { Node, Literal } from './ast';
export type { KflRecord, KflEndpoint, KflMessage, KflPodRef, KflNodeRef } from './record';
