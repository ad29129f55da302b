#!/usr/bin/env bash
# Writes tshark's MySQL fields of the MySQL captures as golden files for
# packages/dissectors/test/mysql.test.ts. Tests never run this; it needs tshark (4.0).
#
# usage: scripts/golden-mysql.sh
#
# Output: fixtures/golden/<capture>/mysql.psv, '|'-separated with a header line, one row per
# frame tshark dissects as MySQL. A frame carrying several MySQL packets (a result set) lists
# the values of all of them, joined with ';' (-E aggregator):
#   frame.number, frame.time_epoch, tcp.stream, tcp.srcport, tcp.dstport
#   mysql.packet_number       sequence id of every packet in the frame
#   mysql.command             command code of a client command (decimal)
#   mysql.query               SQL of COM_QUERY / COM_STMT_PREPARE
#   mysql.table_name          table of COM_FIELD_LIST
#   mysql.schema              database of COM_INIT_DB or of the login
#   mysql.user                user of the login
#   mysql.response_code       0x00 (OK), 0xff (ERR), 0xfe (EOF) of every response packet
#   mysql.error_code, mysql.sqlstate, mysql.error.message
#   mysql.affected_rows, mysql.insert_id, mysql.num_fields
#   mysql.version, mysql.thread_id   from the server greeting
#   mysql.stmt_id, mysql.caps.sl (the client asked for TLS)
# The script checks that no row holds a stray separator.
set -euo pipefail
cd "$(dirname "$0")/.."
FIELDS=(frame.number frame.time_epoch tcp.stream tcp.srcport tcp.dstport mysql.packet_number mysql.command mysql.query mysql.table_name mysql.schema mysql.user
  mysql.response_code mysql.error_code mysql.sqlstate mysql.error.message mysql.affected_rows mysql.insert_id mysql.num_fields
  mysql.version mysql.thread_id mysql.stmt_id mysql.caps.sl)
args=()
for f in "${FIELDS[@]}"; do args+=(-e "$f"); done
while read -r cap; do
  out=fixtures/golden/$cap
  mkdir -p "$out"
  tshark -n -2 -r "fixtures/captures/$cap" -Y mysql -T fields -E header=y -E separator='|' -E aggregator=';' "${args[@]}" >"$out/mysql.psv"
  if awk -F'|' -v n="${#FIELDS[@]}" 'NF != n { bad = 1 } END { exit !bad }' "$out/mysql.psv"; then
    echo "$cap: a value holds the separator" >&2
    exit 1
  fi
  echo "$out/mysql.psv: $(($(wc -l <"$out/mysql.psv") - 1)) frames"
done <<'LIST'
ndpi/mysql.pcapng
zeek/mysql_mysql.pcap
LIST
