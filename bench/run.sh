#!/bin/bash
# bench/run.sh - `make bench` entry point, run inside the loopback rig:
#   B=build tests/rig/rig.sh run -- bench/run.sh
# Runs every benchmark in turn; each prints its own numbers.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
B=${B:-build}
rc=0
echo "== bench_core (core engine vs a bare socket exchange)"
"$B/bench/bench_core" -n "${BENCH_N:-200}" || rc=1
echo "== bench_redis_async (cbvd's loop on a Redis cache: hits, Redis stopped; sync vs async)"
"$B/bench/bench_redis_async" || rc=1
for b in bench/exim_bench.sh bench/exim_daemon_bench.sh bench/exim_multi_bench.sh bench/cache_storm.sh; do
	echo "== $b"
	bash "$b" || rc=1
done
echo "== bench/fleet_storm.sh"
bash bench/fleet_storm.sh || rc=1
# cbvd against calloutd: in a private network namespace of its own (root)
echo "== bench/cbvd_bench.sh"
if [ "$(id -u)" = 0 ] && command -v calloutd >/dev/null; then
	bash bench/cbvd_bench.sh || rc=1
else
	echo "cbvd_bench: SKIP (needs root and calloutd, Debian package mailfromd)"
fi
# TLS sessions and DNS answers shared through the cache store: a fresh process each
echo "== bench/share_bench.sh"
bash bench/share_bench.sh || rc=1
exit "$rc"
