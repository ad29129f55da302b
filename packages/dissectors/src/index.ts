// Public surface of the dissectors package; each protocol module adds its exports here.
export {};
export { ENTRY_ERRORS } from './entry';
export type { Entry, EntryMessage, EntryError, HeaderList } from './entry';
export { HttpDissector } from './http1';
export type { HttpEntry, HttpTime, HttpDissectorOptions, HttpDissectorStats } from './http1';
export { DnsDissector, parseDnsMessage, DNS_MALFORMED_REASONS, DnsType } from './dns';
export type { DnsEntry, DnsMessage, DnsQuestion, DnsRecord, DnsRecordData, DnsDissectorOptions, DnsStats, DnsMalformedReason } from './dns';
export type { TcpProtocol, TcpDissector, StreamOpen, Verdict } from './stream';
export { HTTP_PROTOCOL } from './http1';
export type { HttpUpgrade, HttpRest } from './http1';
export { DNS_TCP_PROTOCOL } from './dns';
export { StreamRouter } from './router';
export type { RoutedProtocol, StreamFacts, StreamRouterOptions, StreamRouterStats } from './router';
export { Http2Dissector, HTTP2_PROTOCOL, HTTP2_PREFACE, HTTP2_ERROR_NAMES, http2ErrorName } from './http2';
export type { Http2Entry, Http2Message, Http2DissectorOptions, Http2DissectorStats, Http2DissectorState } from './http2';
export { HpackDecoder, HpackError, HPACK_ERROR_CODES, HPACK_STATIC_TABLE } from './hpack';
export type { HpackBlock, HpackDecoderOptions, HpackErrorCode } from './hpack';
export { GRPC_STATUS_NAMES, grpcStatusName } from './grpc';
