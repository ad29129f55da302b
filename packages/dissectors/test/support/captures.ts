/** The captures each dissector's tests compare with tshark; chunking.test.ts feeds the same ones cut small. */

/** HTTP/1.x (http1.test.ts). */
export const HTTP1_CAPTURES = [
  'zeek/http_get.pcap',
  'zeek/http_pipelined-requests.pcap',
  'zeek/http_get-gzip.pcap',
  'zeek/http_100-continue.pcap',
  'ndpi/http.pcapng',
  'zeek/http_1000-requests-one-dropped-response.pcap.gz',
  'suricata-verify/http-gap-simple.pcap',
  // Every other capture with HTTP in its golden data: link types, VLANs, reordered handshakes,
  // an upgrade, 12 concurrent connections, requests never answered, more gaps.
  'zeek/http_docker-http-upgrade.pcap',
  'zeek/http_http-body-match.pcap',
  'suricata-verify/http-pipeline-files-with-gap.pcap',
  'suricata-verify/basic_websockets.pcap',
  'suricata-verify/decode-sll2-01.pcap',
  'suricata-verify/syn_retransmit_with_ts.pcap',
  'zeek/tcp_retransmit-timeout.pcapng',
  'zeek/tcp_handshake-reorder.pcap',
  'derived/tcp_handshake-reorder.be-nsec.pcap',
  'derived/tcp_handshake-reorder.be-usec.pcap',
  'derived/tcp_handshake-reorder.le-nsec.pcap',
  'gopacket/test_ethernet.pcap',
  'gopacket/test_loopback.pcap',
  'zeek/http-qinq-0.pcap',
  'zeek/http-vlan-0.pcap',
  'zeek/nflog-http.pcap',
];

/** HTTP/2 and gRPC (http2.test.ts). */
export const HTTP2_CAPTURES = [
  'grpc-go-book/grpc_Unary.pcapng',
  'grpc-go-book/grpc_Bidi_Streaming.pcapng',
  'grpc-go-book/grpc_Client_Streaming.pcapng',
  'grpc-go-book/grpc_Server_Streaming.pcapng',
  'ndpi/http2.pcapng',
  'suricata-verify/http2-keywords.pcap',
  'suricata-verify/http2-continuation.pcap',
  'suricata-verify/http2_multiple_headers.pcap',
  // DNS over HTTPS in cleartext (port 80, prior knowledge), two requests in one packet, one cancelled.
  'suricata-verify/dns_over_https.pcap',
];

/** DNS over UDP and TCP (dns.test.ts). */
export const DNS_CAPTURES = [
  'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap',
  'gopacket/test_dns.pcap',
  'ndpi/dns.pcap',
  'zeek/dns53.pcap',
  'zeek/ipv6-fragmented-dns.pcap',
  'suricata-verify/dns-tcp-multirequest-buffer.pcap',
  'zeek/pcapng-multi-interface.pcapng',
];
