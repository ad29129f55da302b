#!/usr/bin/env bash
# Records the shop scenario (scripts/demo/shop.mjs) with tcpdump on loopback and ships it:
#   apps/worker/demo/demo_shop-checkout.pcap.gz    what `npm start` replays
#   apps/worker/demo/shop-cluster-map.json          the cluster map it replays with
#   fixtures/captures/demo/shop-checkout.pcap.gz    the same capture, for the tshark goldens
#   fixtures/captures/demo/shop-checkout.facts.json what happened (the failing checkout's time,
#                                                   user, token, statuses) for the tests
# Needs root (or CAP_NET_RAW) for tcpdump, and Linux (all of 127.0.0.0/8 is loopback).
# Afterwards: scripts/golden.sh demo/shop-checkout.pcap.gz
# usage: scripts/demo/record.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
net=$(node -e 'import("./scripts/demo/topology.mjs").then((t) => console.log(t.NET))')

tcpdump -i lo -s 0 -n -w "$work/shop.pcap" "net $net" 2>"$work/tcpdump.err" &
tcpdump_pid=$!
for _ in $(seq 50); do grep -q 'listening on' "$work/tcpdump.err" && break; sleep 0.1; done
grep -q 'listening on' "$work/tcpdump.err" || { cat "$work/tcpdump.err" >&2; exit 1; }
sleep 0.5

node scripts/demo/shop.mjs "$work/facts.json" || { kill -INT "$tcpdump_pid"; exit 1; }
sleep 1
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" || true
cat "$work/tcpdump.err" >&2
grep -q '^0 packets dropped by kernel' "$work/tcpdump.err" || { echo 'record: tcpdump dropped packets; record again' >&2; exit 1; }

# Every object of the map exists a day before the capture starts.
created=$(node -e 'const f = require(process.argv[1]); console.log(new Date(Date.parse(f.started_at) - 86400000).toISOString())' "$work/facts.json")
mkdir -p fixtures/captures/demo
gzip -9 -n -c "$work/shop.pcap" > fixtures/captures/demo/shop-checkout.pcap.gz
cp fixtures/captures/demo/shop-checkout.pcap.gz apps/worker/demo/demo_shop-checkout.pcap.gz
cp "$work/facts.json" fixtures/captures/demo/shop-checkout.facts.json
node scripts/demo/cluster-map.mjs apps/worker/demo/shop-cluster-map.json "$created"
ls -l apps/worker/demo/demo_shop-checkout.pcap.gz
