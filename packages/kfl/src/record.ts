/**
 * What a filter runs against: one API call or one L4 flow, as nested plain objects following
 * the catalogue's dotted paths (`src.pod.name` is `record.src.pod.name`). The worker maps a
 * stored entry or flow to this shape; every field is optional and a missing one reads as its
 * type's zero value. A test keeps this interface and the catalogue equal, path for path.
 *
 * Units: `timestamp` is microseconds since the Unix epoch, `elapsed_time` and the other `_us`
 * and duration fields microseconds, sizes bytes, `flow_*_bps` bytes per second. Header names
 * in `request.headers`/`response.headers` are lower-case.
 */

export interface KflPodRef {
  name?: string;
  namespace?: string;
}

export interface KflNodeRef {
  name?: string;
}

export interface KflEndpoint {
  ip?: string;
  port?: number;
  pod?: KflPodRef;
  service?: KflPodRef;
  name?: string;
  namespace?: string;
  node?: KflNodeRef;
  dns?: string;
}

export interface KflMessage {
  headers?: Record<string, string>;
  body?: string;
}

export interface KflRecord {
  // protocol flags
  http?: boolean;
  grpc?: boolean;
  dns?: boolean;
  redis?: boolean;
  kafka?: boolean;
  amqp?: boolean;
  postgresql?: boolean;
  mysql?: boolean;
  mongodb?: boolean;
  ws?: boolean;
  tcp?: boolean;
  udp?: boolean;
  tls?: boolean;
  flow?: boolean;
  tcp_flow?: boolean;
  udp_flow?: boolean;
  // network and Kubernetes
  src?: KflEndpoint;
  dst?: KflEndpoint;
  protocol?: string;
  namespaces?: string[];
  pods?: string[];
  services?: string[];
  node_name?: string;
  node_ip?: string;
  local_labels?: Record<string, string>;
  remote_labels?: Record<string, string>;
  local_annotations?: Record<string, string>;
  remote_annotations?: Record<string, string>;
  local_node_name?: string;
  remote_node_name?: string;
  // entry
  id?: string;
  flow_id?: string;
  index?: number;
  worker?: string;
  timestamp?: number;
  elapsed_time?: number;
  failure?: string;
  error?: string;
  // HTTP
  method?: string;
  path?: string;
  url?: string;
  status_code?: number;
  status_text?: string;
  http_version?: string;
  query_string?: Record<string, string>;
  request?: KflMessage;
  response?: KflMessage;
  request_headers_size?: number;
  response_headers_size?: number;
  request_body_size?: number;
  response_body_size?: number;
  // DNS
  dns_questions?: string[];
  dns_answers?: string[];
  dns_question_types?: string[];
  dns_request?: boolean;
  dns_response?: boolean;
  dns_request_length?: number;
  dns_response_length?: number;
  // gRPC
  grpc_method?: string;
  grpc_service?: string;
  grpc_status?: number;
  // Redis
  redis_type?: string;
  redis_command?: string;
  redis_key?: string;
  // Kafka
  kafka_api_key?: number;
  kafka_api_key_name?: string;
  kafka_client_id?: string;
  kafka_request_summary?: string;
  kafka_topics?: string[];
  // AMQP
  amqp_method?: string;
  amqp_summary?: string;
  amqp_exchange?: string;
  amqp_routing_key?: string;
  // SQL
  postgresql_command?: string;
  postgresql_query?: string;
  postgresql_database?: string;
  postgresql_user?: string;
  postgresql_success?: boolean;
  postgresql_error_code?: string;
  mysql_command?: string;
  mysql_query?: string;
  mysql_database?: string;
  mysql_success?: boolean;
  mysql_error_code?: number;
  // MongoDB
  mongodb_command?: string;
  mongodb_database?: string;
  mongodb_collection?: string;
  mongodb_success?: boolean;
  // WebSocket
  ws_opcode?: string;
  // L4 flows
  flow_state?: string;
  flow_local_pkts?: number;
  flow_local_bytes?: number;
  flow_remote_pkts?: number;
  flow_remote_bytes?: number;
  flow_local_pps?: number;
  flow_local_bps?: number;
  flow_remote_pps?: number;
  flow_remote_bps?: number;
  flow_duration?: number;
  tcp_handshake_client_us?: number;
  tcp_handshake_server_us?: number;
  tcp_retransmissions?: number;
  tcp_rst_count?: number;
}
