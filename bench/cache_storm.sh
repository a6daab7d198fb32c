#!/bin/bash
# bench/cache_storm.sh - a verification storm through the shared cache
# (issue 7): STORM_VERIFS (1000) verifications of STORM_ADDRS (50)
# distinct addresses at one domain, from STORM_PROCS (32) concurrent Exim
# processes (`exim -bhc` sessions of 5 RCPTs each, through exim-conf's RCPT
# ACL and cbv.so, every RCPT verified).  One address in five is unknown at
# the MX (550).  Prints how many RCPTs the remote MX saw (target: at most
# one per address, plus catch-all probes, which are off here), the
# verdicts against what each address should get, and the wall time.
#
# Two rounds, each with a fresh cache: the default caps
# (domain_max_concurrency 4, domain_max_rate 60/1m: a storm over them is
# answered transient/rate_limited, 451, without a connection), and caps
# off (single flight alone).  A third round without the cache (cache=)
# shows what the storm costs the MX then.
#
# The MX is the rig's counting server (count.test, RCPTs logged to
# $CBV_RIG_DIR/rcpt.log) when the rig has it, else fast.test counted in
# fakesmtp's -v log.  Run inside the rig (make bench).  Prints; exits 0.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/exim/lib.sh"
PROCS=${STORM_PROCS:-32}
VERIFS=${STORM_VERIFS:-1000}
NADDR=${STORM_ADDRS:-50}
K=5

if [[ ! -e $B/cbv.so ]] || nm -D "$B/cbv.so" 2>/dev/null | grep -q '__asan_'; then
	echo "cache_storm: SKIP (no cbv.so, or a sanitizer build)"
	exit 0
fi
front_setup
trap front_cleanup EXIT

if "$B/cbv" verify -c "$T/cbv.conf" -o cache= x@count.test 2>/dev/null | grep -q ' pass '; then
	DOM=count.test
	rcpts() { grep -c "storm$$-" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
else
	DOM=fast.test
	rcpts() { grep -c "RCPT TO:<[a-z-]*storm$$-" "$CBV_RIG_DIR/fakesmtp.log" 2>/dev/null; }
	if [[ ${CBV_RIG_QUIET:-0} == 1 ]]; then
		echo "cache_storm: note: fakesmtp runs without -v (CBV_RIG_QUIET=1): RCPTs cannot be counted"
	fi
fi
ADDRS=()
for ((i = 0; i < NADDR; i++)); do
	if ((i % 5 == 4)); then ADDRS+=("unknown-storm$$-$i@$DOM"); else ADDRS+=("storm$$-$i@$DOM"); fi
done
want() { [[ $1 == unknown-* ]] && echo 550 || echo 250; }

mkdir -p "$T/db"
chown Debian-exim:Debian-exim "$T/db"
chmod 750 "$T/db"

# worker W ROUND OPTIONS: sessions W, W+PROCS, ... one after another;
# prints "ADDRESS CODE" per RCPT and the session's log lines (stderr).
worker() {
	local w=$1 round=$2 opts=$3 s j n=$((VERIFS / K)) a cmds codes
	for ((s = w; s < n; s += PROCS)); do
		cmds='HELO storm.test\r\nMAIL FROM:<>\r\n'
		local list=()
		for ((j = 0; j < K; j++)); do
			a=${ADDRS[$(((s * K + j) % NADDR))]}
			list+=("$a")
			cmds+="RCPT TO:<$a>\\r\\n"
		done
		codes=$(printf "${cmds}QUIT\\r\\n" |
			front -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=$opts" -DCBV_NO_SETVARS=1 \
				-bhc 127.0.0.1 2>>"$T/storm.$round.log.$w" | tr -d '\r' |
			grep -E '^[0-9]{3} ' | sed -n "4,$((3 + K))p" | cut -c1-3)
		paste -d' ' <(printf '%s\n' "${list[@]}") <(printf '%s\n' "$codes")
	done
}

round() { # NAME OPTIONS
	local name=$1 opts=$2 before after t0 t1 w
	rm -f "$T/db/cbv" "$T/db/cbv-lock"
	before=$(rcpts)
	t0=$(date +%s%N)
	for ((w = 0; w < PROCS; w++)); do
		worker "$w" "$name" "$opts" >"$T/storm.$name.out.$w" &
	done
	wait
	t1=$(date +%s%N)
	after=$(rcpts)
	cat "$T"/storm."$name".out.* >"$T/storm.$name.out"
	cat "$T"/storm."$name".log.* >"$T/storm.$name.log" 2>/dev/null
	local total right=0 wrong=0 deferred=0 other=0 addr code
	total=$(wc -l <"$T/storm.$name.out")
	while read -r addr code; do
		if [[ $code == "$(want "$addr")" ]]; then
			right=$((right + 1))
		elif [[ $code == 451 ]]; then
			deferred=$((deferred + 1))
		elif [[ $code == 250 || $code == 550 ]]; then
			wrong=$((wrong + 1))
		else
			other=$((other + 1))
		fi
	done <"$T/storm.$name.out"
	local hit miss off limited
	hit=$(grep -c ' cache=hit' "$T/storm.$name.log")
	miss=$(grep -c ' cache=miss' "$T/storm.$name.log")
	off=$(grep -c ' cache=off' "$T/storm.$name.log")
	limited=$(grep -c 'transient/rate_limited' "$T/storm.$name.log")
	printf '%-28s %6s %7s %6s %6s %5s %6s %5s %5s %5s %8s %9s\n' "$name" "$total" \
		"$((after - before))" "$right" "$deferred" "$wrong" "$other" "$hit" "$miss" "$off" \
		"$limited" "$(awk -v n="$((t1 - t0))" 'BEGIN { printf "%.2f", n / 1e9 }')"
}

echo "cache_storm: $VERIFS verifications of $NADDR addresses at $DOM (1 in 5 unknown: 550)," \
	"$PROCS concurrent exim -bhc processes, $K RCPTs per session"
printf '%-28s %6s %7s %6s %6s %5s %6s %5s %5s %5s %8s %9s\n' "round" "verifs" "MX RCPT" \
	"right" "451" "wrong" "other" "hit" "miss" "off" "rate_lim" "wall s"
round "cache, default caps" "timeout=10s cache=$T/db/cbv"
round "cache, caps off" \
	"timeout=10s cache=$T/db/cbv domain_max_concurrency=0 domain_max_rate=0 host_max_concurrency=0"
round "no cache (cache=)" "timeout=10s cache="
if ! grep -q ' cache=hit' "$T/storm.cache, default caps.log" "$T/storm.cache, caps off.log"; then
	echo "cbv.so cache: NOT IN USE (no cache=hit logged: verifications are not cached in this build);"
	echo "every round is uncached, targets not applicable"
fi
echo "MX RCPT = RCPTs the remote MX saw (target with the cache: <= $NADDR); right = the code the address"
echo "should get (250, or 550 for unknown-*); 451 = deferred (rate_limited or timeout); wrong = 250/550"
echo "swapped (target 0); hit/miss/off/rate_lim = cbv.so's log lines"
