#!/usr/bin/env bash
# Writes tshark's PostgreSQL (pgsql) fields of the PostgreSQL captures as golden files for
# packages/dissectors/test/postgresql.test.ts. Tests never run this; it needs tshark (4.0).
#
# usage: scripts/golden-postgresql.sh
#
# Output: fixtures/golden/<capture>/postgresql.psv, '|'-separated with a header line, one row
# per frame tshark dissects as pgsql, the messages of a frame in order:
#   frame.number, tcp.stream, tcp.srcport
#   pgsql.frontend, pgsql.type            per message: 1 from the client; tshark's type name
#   pgsql.query                           Simple query and Parse: the SQL text
#   pgsql.statement, pgsql.portal         names in Parse, Bind, Describe, Execute, Close
#   pgsql.tag                             CommandComplete tags
#   pgsql.severity, pgsql.code, pgsql.message   ErrorResponse and NoticeResponse fields
#   pgsql.parameter_name, pgsql.parameter_value StartupMessage parameters and ParameterStatus
# Several values of a field are joined with the ASCII unit separator (0x1f), which SQL text
# does not hold; the script checks that every row has its 14 fields (no '|' in a value).
set -euo pipefail
cd "$(dirname "$0")/.."
for cap in \
  ndpi/pgsql.pcap \
  suricata-verify/pgsql-simple-query-rollback.pcap \
  zeek/postgresql_psql-aws-ssl-require.pcap \
  zeek/postgresql_psql-create-insert-select-delete-drop.pcap \
  zeek/postgresql_psql-login.pcap; do
  out=fixtures/golden/$cap
  mkdir -p "$out"
  tshark -n -2 -r "fixtures/captures/$cap" -Y pgsql -T fields -E header=y -E separator='|' -E aggregator=$'\x1f' \
    -e frame.number -e tcp.stream -e tcp.srcport -e pgsql.frontend -e pgsql.type -e pgsql.query \
    -e pgsql.statement -e pgsql.portal -e pgsql.tag -e pgsql.severity -e pgsql.code -e pgsql.message \
    -e pgsql.parameter_name -e pgsql.parameter_value >"$out/postgresql.psv"
  if awk -F'|' 'NF != 14 { bad = 1 } END { exit !bad }' "$out/postgresql.psv"; then
    echo "$cap: a value holds the separator" >&2
    exit 1
  fi
  echo "$out/postgresql.psv: $(($(wc -l <"$out/postgresql.psv") - 1)) frames"
done
