#!/bin/bash
# bench/share_bench.sh - runs bench_share (a fresh process per
# verification, cold vs warm cache store: TLS sessions and DNS answers)
# inside the rig, with a dnsmasq that answers with TTLs
# (tests/integration/ttl_dns.sh) and, when redis-server is installed, a
# Redis of its own on loopback.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/integration/ttl_dns.sh"
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
need_rig
D=$(mktemp -d /tmp/cbv-sharebench.XXXXXX)
RPID=
trap 'ttl_dns_stop; [[ -n $RPID ]] && kill "$RPID" 2>/dev/null; rm -rf "$D"' EXIT
ttl_dns_start "$D" || { echo "share_bench: dnsmasq did not start" >&2; exit 1; }
REDIS=
if command -v redis-server >/dev/null; then
	RP=$(free_port)
	redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$D" >/dev/null 2>&1 &
	RPID=$!
	for _ in $(seq 50); do
		redis-cli -p "$RP" ping >/dev/null 2>&1 && { REDIS="redis://127.0.0.1:$RP/0"; break; }
		sleep 0.1
	done
fi
BENCH_DNS=127.0.0.1:$DNS_PORT BENCH_DIR=$D BENCH_REDIS=$REDIS "$B/bench/bench_share" -n "${BENCH_N:-100}"
