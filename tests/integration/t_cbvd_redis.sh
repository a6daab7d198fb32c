#!/bin/bash
# cbvd on a Redis cache, end to end against the loopback rig: its Redis
# calls go out without blocking its loop (cbv_cache_async.h).  Verdicts
# and the cache through cbvd (one RCPT per address, records in Redis);
# Redis stopped (SIGSTOP): every VRFY still answered with its true verdict,
# one log line for the outage; Redis continued, then killed and restarted:
# caching resumes without restarting cbvd.  Starts its own redis-server;
# leaves nothing running.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
B=${B:-build}
CBVD="$B/cbvd"
BENCH="$B/bench/cbvd_bench"

need_rig
need_built "$CBVD" "$BENCH"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	skip "no redis-server/redis-cli (Debian package redis-server)"
	summary
	exit 0
fi
TMP=$(mktemp -d)
chmod 755 "$TMP"
mkdir "$TMP/run" "$TMP/redis"
cbvd_dirs "$TMP/run"
RPID=
PIDS=()
cleanup() {
	[[ -n $RPID ]] && { kill -CONT "$RPID"; kill "$RPID"; wait "$RPID"; } 2>/dev/null
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

RPORT=$(free_port)
PORT=$(free_port)
SOCK="$TMP/run/cbvd.sock"
RCLI=(redis-cli -h 127.0.0.1 -p "$RPORT")

redis_up() {
	redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
		--dir "$TMP/redis" --loglevel warning >/dev/null 2>&1 &
	RPID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $("${RCLI[@]}" PING 2>/dev/null) == PONG ]] && return 0
		sleep 0.05
	done
	return 1
}
redis_down() { kill -KILL "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; RPID=; }
# address records Redis holds for the domain
records() { "${RCLI[@]}" --scan --pattern "cbv:A:$1:*" 2>/dev/null | wc -l; }
rcpts() { grep -c "^127\.0\.0\.65 <$1>\$" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
# vrfy N ADDRESS...: N verifications through cbvd, 8 at once; prints cbvd_bench's line
vrfy() { local n=$1; shift; "$BENCH" -s "unix://$SOCK" -c 8 -n "$n" "$@" 2>&1; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

redis_up || { bad "redis-server starts"; summary; exit 1; }
{
	rig_profile default 'helo = "verifier.test"' 'timeout = 10s' \
		"cache = \"redis://127.0.0.1:$RPORT\"" 'cache_timeout = 1s' \
		'domain_max_rate = 0' 'domain_max_concurrency = 0'
	cat <<CONF
server {
  listen = [ "unix://$SOCK" ]
  max_clients = 64
  max_inflight = 256
}
CONF
} >"$TMP/cbv.conf"
if cbvd_start "$CBVD" "$TMP/cbvd.log" -c "$TMP/cbv.conf"; then
	PIDS+=("$CBVD_PID")
	ok "cbvd starts on a Redis cache"
else
	bad "cbvd starts on a Redis cache" "$(cat "$TMP/cbvd.log")"
	summary
	exit 1
fi

# 4 addresses x 8 verifications at once: one RCPT each, the rest from single flight and Redis
A=()
for i in 1 2 3 4; do A+=("u$i-$$@count.test"); done
out=$(vrfy 32 "${A[@]}")
check "32 verifications, all success ($out)" test "$(field success "$out")" = 32
n=0
for a in "${A[@]}"; do n=$((n + $(rcpts "$a"))); done
check "one RCPT per address ($n)" test "$n" = 4
check "records in Redis ($(records count.test))" test "$(records count.test)" -ge 4
# cbvd's counters reach the store too (HINCRBY on the non-blocking connection)
ends=$("${RCLI[@]}" HGETALL cbv:S 2>/dev/null | awk 'NR % 2 == 1 { k = $0 } NR % 2 == 0 && k ~ /^e:pass:/ { n += $0 } END { print n + 0 }')
check "cbvd's verifications counted in the store ($ends)" test "$ends" = 32
unknown="unknown-$$@count.test"
out=$(vrfy 4 "$unknown")
check "unknown user: not_found ($out)" test "$(field not_found "$out")" = 4

# Redis stopped: VRFYs still answered (uncached, true verdicts), one line logged
kill -STOP "$RPID"
S=()
for i in 1 2 3 4 5 6 7 8; do S+=("s$i-$$@count.test"); done
out=$(vrfy 16 "${S[@]}" "unknown-s$$@count.test")
kill -CONT "$RPID"
check "Redis stopped: all answered ($out)" test "$(field errors "$out")" = 0
check "Redis stopped: true verdicts" test "$(field success "$out")" -ge 14 -a \
	"$(($(field success "$out") + $(field not_found "$out")))" = 16
lines=$(grep -c "no answer within cache_timeout" "$TMP/cbvd.log")
check "one log line for the outage ($lines)" test "$lines" = 1

# continued: after the backoff, caching resumes without a restart
before=$(records count.test)
resumed=0
for ((i = 0; i < 40; i++)); do
	sleep 0.25
	vrfy 1 "r$i-$$@count.test" >/dev/null
	if grep -q "reachable again" "$TMP/cbvd.log" && [[ $(records count.test) -gt $before ]]; then
		resumed=1
		break
	fi
done
check "Redis continued: reachable again, new records ($before -> $(records count.test))" \
	test "$resumed" = 1

# killed and restarted: answered meanwhile; caching resumes on the new Redis
redis_down
out=$(vrfy 4 "k1-$$@count.test" "k2-$$@count.test")
check "Redis killed: all answered ($out)" test "$(field success "$out")" = 4
redis_up || bad "redis-server restarts"
resumed=0
for ((i = 0; i < 80; i++)); do
	sleep 0.25
	vrfy 1 "z$i-$$@count.test" >/dev/null
	if [[ $(records count.test) -gt 0 ]]; then
		resumed=1
		break
	fi
done
check "Redis restarted: caching resumes without restarting cbvd" test "$resumed" = 1
kill -0 "$CBVD_PID" 2>/dev/null && ok "cbvd still running" || bad "cbvd still running"
cbvd_stop
summary
