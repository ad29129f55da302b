#!/usr/bin/env bash
# Regenerates the golden files under fixtures/golden from tshark (the independent oracle).
# Needs tshark (apt-get install tshark) and the shared oracle script; tests never run this.
# usage: scripts/golden.sh [capture ...]   (default: every capture under fixtures/captures)
set -euo pipefail
cd "$(dirname "$0")/.."
oracle=${ORACLE:-../shared/tools/tshark-oracle.sh}
captures=("$@")
if [ ${#captures[@]} -eq 0 ]; then
  mapfile -t captures < <(cd fixtures/captures && find . -name '*.pcap' -o -name '*.pcapng' -o -name '*.pcap.gz' | sed 's#^\./##' | grep -v '^gopacket/le_test' | sort)
fi
for c in "${captures[@]}"; do
  out=fixtures/golden/$c
  mkdir -p "$out"
  # The shared oracle ends with `wc -l "$O"/*`, which fails on subfolders (streams/): run it in
  # a scratch folder and move its files in.
  scratch=$(mktemp -d)
  bash "$oracle" "fixtures/captures/$c" "$scratch" >/dev/null
  mv "$scratch"/* "$out"/
  rmdir "$scratch"
  # Only the L4 files are compared today; keep the L7 ones that carry data for the dissector issue.
  for f in http.psv http2.psv dns.psv; do [ "$(wc -l < "$out/$f")" -gt 1 ] || rm -f "$out/$f"; done
  rm -f "$out/expert.txt"
  # UDP conversations, same shape as tcp_streams.csv (the shared oracle covers TCP only).
  # ICMP errors quote a UDP header; they are not UDP traffic.
  tshark -n -r "fixtures/captures/$c" -Y 'udp && !icmp && !icmpv6' -T fields -E separator=, \
    -e udp.stream -e ip.src -e ipv6.src -e udp.srcport -e ip.dst -e ipv6.dst -e udp.dstport -e frame.len -e udp.length -e frame.time_epoch 2>/dev/null |
   awk -F, 'BEGIN{OFS=","}
    {s=$2$3":"$4; d=$5$6":"$7; k=$1; if(!(k in A)){A[k]=s;B[k]=d;T0[k]=$10} dir=(s==A[k])?1:2; F[k,dir]++; BY[k,dir]+=$8; P[k,dir]+=$9-8; T1[k]=$10}
    END{for(k in A) print k,A[k],B[k],F[k,1]+0,BY[k,1]+0,P[k,1]+0,F[k,2]+0,BY[k,2]+0,P[k,2]+0,T0[k],T1[k]}' | sort -t, -k1,1n |
   sed '1i stream,a,b,ab_frames,ab_bytes,ab_payload,ba_frames,ba_bytes,ba_payload,first_ts,last_ts' > "$out/udp_streams.csv"
  # TCP health: per stream and direction (a->b, b->a; a sends the stream's first packet, as in
  # tcp_streams.csv), how many frames carry each tcp.analysis flag. Single pass, as `tshark -r`
  # and Wireshark show them (the flags are fixed when a frame is first dissected; -2 gives the
  # same counts for every capture here). Retransmission counts fast and spurious ones too, as
  # tshark sets tcp.analysis.retransmission on those. Tab-separated because a duplicate ACK
  # prints its field twice ("1,1"); the last occurrence is the innermost header.
  health=(retransmission fast_retransmission spurious_retransmission out_of_order duplicate_ack zero_window keep_alive window_full lost_segment ack_lost_segment)
  fields=(); for f in "${health[@]}"; do fields+=(-e "tcp.analysis.$f"); done
  tshark -n -r "fixtures/captures/$c" -Y tcp -T fields -E separator=/t -E occurrence=l \
    -e tcp.stream -e ip.src -e ipv6.src -e tcp.srcport -e ip.dst -e ipv6.dst -e tcp.dstport \
    "${fields[@]}" 2>/dev/null |
   awk -F'\t' -v n=${#health[@]} 'BEGIN{OFS=","}
    {s=$2$3":"$4; d=$5$6":"$7; k=$1; if(!(k in A)){A[k]=s;B[k]=d} dir=(s==A[k])?1:2; for(i=1;i<=n;i++) if($(7+i)!="") C[k,dir,i]++}
    END{for(k in A){l=k OFS A[k] OFS B[k]; for(dir=1;dir<=2;dir++) for(i=1;i<=n;i++) l=l OFS (C[k,dir,i]+0); print l}}' | sort -t, -k1,1n |
   { printf 'stream,a,b'; for p in ab ba; do printf ",${p}_%s" "${health[@]}"; done; echo; cat; } > "$out/tcp_health.csv"
  # tcp.completeness per stream: two passes, so every frame carries the conversation's final value.
  tshark -2 -n -r "fixtures/captures/$c" -Y tcp -T fields -E separator=, -e tcp.stream -e tcp.completeness 2>/dev/null |
   awk -F, '{L[$1]=$2} END{for(k in L) print k "," L[k]}' | sort -t, -k1,1n | { echo 'stream,completeness'; cat; } > "$out/tcp_completeness.csv"
  tshark -n -r "fixtures/captures/$c" 2>/dev/null | wc -l | tr -d ' ' > "$out/frames.txt"
  # sed '1i' writes nothing for an empty input: give every CSV its header even with no rows.
  for f in tcp_streams.csv udp_streams.csv; do [ -s "$out/$f" ] || echo 'stream,a,b,ab_frames,ab_bytes,ab_payload,ba_frames,ba_bytes,ba_payload,first_ts,last_ts' > "$out/$f"; done
  [ -s "$out/handshakes.csv" ] || echo 'stream,syn_ts,synack_ts,irtt_s' > "$out/handshakes.csv"
done
# pcapng conformance files: the records tshark reads, how many of them are packets (records on
# an interface; custom blocks show up as interface-less "data" records), and tshark's error.
{
  printf 'file\tframes\tpackets\terror\n'
  for f in fixtures/captures/gopacket/le_test*.pcapng; do
    (tshark -n -r "$f" -T fields -e frame.interface_id 2>/tmp/golden.err || true) > /tmp/golden.rows
    n=$(wc -l < /tmp/golden.rows | tr -d ' ')
    pk=$(grep -c '[0-9]' /tmp/golden.rows || true)
    err=$(grep -v 'Running as user' /tmp/golden.err | tr '\t\n' '  ' || true)
    printf '%s\t%s\t%s\t%s\n' "$(basename "$f")" "$n" "$pk" "$err"
  done
} > fixtures/golden/gopacket-pcapng.tsv
