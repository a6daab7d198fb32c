#!/bin/bash
# bench/fleet_storm.sh - the cache storm (bench/cache_storm.sh) spread over
# a fleet of 4 MX hosts sharing one real redis-server on loopback (issue
# 8), through real processes: two Exim hosts (exim-conf's RCPT ACL and
# cbv.so, primary_hostname mx1/mx2.fleet.test, `exim -bhc` sessions of 5
# RCPTs) and two cbvd instances (callout-protocol clients, 5 VRFYs a
# connection).  FLEET_VERIFS (1000) verifications of FLEET_ADDRS (50)
# addresses at the rig's counting server, from FLEET_PROCS (32) concurrent
# sessions, a quarter on each host; one address in five is unknown (550).
#
# Prints per round the RCPTs the remote MX saw (target with Redis: one per
# address), the verdicts against what each address should get, and the
# wall time.  Rounds: Redis with caps off (single flight alone), Redis
# with the default caps (domain_max_concurrency 4, domain_max_rate 60/1m
# for the whole fleet: the rest is deferred, 451/rate_limited), and no
# cache.  Run inside the rig (make bench).  Prints; exits 0.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/exim/lib.sh"
PROCS=${FLEET_PROCS:-32}
VERIFS=${FLEET_VERIFS:-1000}
NADDR=${FLEET_ADDRS:-50}
K=5
PY=/usr/bin/python3

if [[ ! -e $B/cbv.so ]] || nm -D "$B/cbv.so" 2>/dev/null | grep -q '__asan_'; then
	echo "fleet_storm: SKIP (no cbv.so, or a sanitizer build)"
	exit 0
fi
if ! command -v redis-server >/dev/null || [[ ! -x $B/cbvd ]]; then
	echo "fleet_storm: SKIP (needs redis-server and $B/cbvd)"
	exit 0
fi

W=$(mktemp -d /tmp/cbv-fleetbench.XXXXXX)
chmod 755 "$W"
PIDS=()
TA='' TB=''
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$W"
	[[ $TA == /tmp/cbv-front.* ]] && rm -rf "$TA"
	[[ $TB == /tmp/cbv-front.* ]] && rm -rf "$TB"
}
trap cleanup EXIT

RP=$(free_port)
redis-server --bind 127.0.0.1 --port "$RP" --save "" --appendonly no --dir "$W" \
	--daemonize no --logfile "$W/redis.log" </dev/null >/dev/null 2>&1 &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do
	[[ $(redis-cli -h 127.0.0.1 -p "$RP" ping 2>&1) == PONG ]] && break
	sleep 0.1
done

# profiles: one cache prefix per round, so each round starts empty
conf() { # HELO_LINE...
	local redis="redis://127.0.0.1:$RP"
	rig_profile nocaps 'timeout = 20s' "cache = \"$redis\"" "cache_prefix = \"fs$$-nocaps:\"" \
		'domain_max_concurrency = 0' 'domain_max_rate = 0' 'host_max_concurrency = 0' "$@"
	rig_profile caps 'timeout = 20s' "cache = \"$redis\"" "cache_prefix = \"fs$$-caps:\"" "$@"
	rig_profile nocache 'timeout = 20s' "$@"
}
front_setup
sed -i 's/^primary_hostname = .*/primary_hostname = mx1.fleet.test/' "$T/exim.conf"
conf >>"$T/cbv.conf"
TA=$T ARGS_A=("${FRONT_ARGS[@]}")
front_setup
sed -i 's/^primary_hostname = .*/primary_hostname = mx2.fleet.test/' "$T/exim.conf"
conf >>"$T/cbv.conf"
TB=$T ARGS_B=("${FRONT_ARGS[@]}")

declare -A CURL=()
for c in cbvd1 cbvd2; do
	port=$(free_port)
	{
		conf "helo = \"$c.fleet.test\""
		printf 'server {\n  listen = [ "inet://127.0.0.1:%s" ]\n  max_clients = 200\n}\n' "$port"
	} >"$W/$c.conf"
	chmod 644 "$W/$c.conf"
	CURL[$c]=127.0.0.1:$port
	if ! cbvd_start "$B/cbvd" "$W/$c.log" -c "$W/$c.conf"; then
		echo "fleet_storm: $c did not start: $(cat "$W/$c.log")"
		exit 0
	fi
	PIDS+=("$CBVD_PID")
done

cat >"$W/cq.py" <<'PY'
# cq.py HOST:PORT PROFILE ADDRESS...: one connection, VRFY+RUN per address;
# prints "ADDRESS CODE" with the code an Exim ACL would give (250, 550, 451).
import socket, sys
h, p = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((h, int(p)))
s.settimeout(120)
f = s.makefile("rb")
def line():
    return f.readline().decode("latin1").rstrip("\r\n")
def cmd(c):
    s.sendall(c.encode() + b"\r\n")
    return line()
line()
cmd('SET PROFILE="%s"' % sys.argv[2])
code = {"success": "250", "not_found": "550", "temp_failure": "451", "failure": "error"}
for a in sys.argv[3:]:
    cmd('VRFY "%s"' % a)
    s.sendall(b"RUN\r\n")
    l = line()
    while l.startswith("*"):
        l = line()
    w = l.rsplit("=", 1)
    print(a, code.get(w[-1], "other"), flush=True)
cmd("QUIT")
PY

DOM=count.test
rcpts() { grep -c "fleet$$-" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
ADDRS=()
for ((i = 0; i < NADDR; i++)); do
	if ((i % 5 == 4)); then ADDRS+=("unknown-fleet$$-$i@$DOM"); else ADDRS+=("fleet$$-$i@$DOM"); fi
done
want() { [[ $1 == unknown-* ]] && echo 550 || echo 250; }

# worker W PROFILE: sessions W, W+PROCS, ...; worker W is on host W % 4
# (Exim A, Exim B, cbvd1, cbvd2); prints "ADDRESS CODE" per verification.
worker() {
	local w=$1 prof=$2 s j n=$((VERIFS / K)) host=$(($1 % 4)) list cmds codes
	for ((s = w; s < n; s += PROCS)); do
		list=()
		cmds='HELO storm.test\r\nMAIL FROM:<>\r\n'
		for ((j = 0; j < K; j++)); do
			list+=("${ADDRS[$(((s * K + j) % NADDR))]}")
			cmds+="RCPT TO:<${list[j]}>\\r\\n"
		done
		case $host in
		0 | 1)
			if ((host == 0)); then FRONT_ARGS=("${ARGS_A[@]}"); else FRONT_ARGS=("${ARGS_B[@]}"); fi
			# shellcheck disable=SC2059  # cmds is our own format
			codes=$(printf "${cmds}QUIT\\r\\n" |
				front -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=profile=$prof" -DCBV_NO_SETVARS=1 \
					-bhc 127.0.0.1 2>/dev/null | tr -d '\r' |
				grep -E '^[0-9]{3} ' | sed -n "4,$((3 + K))p" | cut -c1-3)
			paste -d' ' <(printf '%s\n' "${list[@]}") <(printf '%s\n' "$codes")
			;;
		2) "$PY" "$W/cq.py" "${CURL[cbvd1]}" "$prof" "${list[@]}" ;;
		3) "$PY" "$W/cq.py" "${CURL[cbvd2]}" "$prof" "${list[@]}" ;;
		esac
	done
}

# Redis outage lines (a command slower than cache_timeout, 100 ms, counts
# as one: that process then runs uncached for its backoff)
outages() { cat "$TA/log/mainlog" "$TB/log/mainlog" "$W"/cbvd*.log 2>/dev/null | grep -c 'retrying with backoff'; }

round() { # NAME PROFILE
	local name=$1 prof=$2 before after t0 t1 w total right=0 deferred=0 wrong=0 other=0 addr code o0
	before=$(rcpts)
	o0=$(outages)
	t0=$(date +%s%N)
	local wp=()
	for ((w = 0; w < PROCS; w++)); do
		worker "$w" "$prof" >"$W/out.$prof.$w" &
		wp+=($!)
	done
	wait "${wp[@]}"
	t1=$(date +%s%N)
	after=$(rcpts)
	cat "$W"/out."$prof".* >"$W/out.$prof"
	total=$(wc -l <"$W/out.$prof")
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
	done <"$W/out.$prof"
	printf '%-30s %6s %7s %6s %6s %5s %6s %7s %7s\n' "$name" "$total" "$((after - before))" \
		"$right" "$deferred" "$wrong" "$other" "$(($(outages) - o0))" \
		"$(awk -v n="$((t1 - t0))" 'BEGIN { printf "%.2f", n / 1e9 }')"
}

echo "fleet_storm: $VERIFS verifications of $NADDR addresses at $DOM (1 in 5 unknown: 550)," \
	"$PROCS concurrent sessions of $K over 4 hosts (Exim mx1, Exim mx2, cbvd1, cbvd2), one Redis"
printf '%-30s %6s %7s %6s %6s %5s %6s %7s %7s\n' round verifs "MX RCPT" right 451 wrong other outages "wall s"
round "Redis, caps off" nocaps
round "Redis, default caps" caps
round "no cache" nocache
echo "MX RCPT = RCPTs the remote MX saw (target with Redis: <= $NADDR, one per address, whatever"
echo "the number of hosts); right = the code the address should get (250, or 550 for unknown-*);"
echo "451 = deferred (the fleet-wide caps: rate_limited); wrong = 250/550 swapped (target 0);"
echo "outages = processes that found Redis slower than cache_timeout (100 ms) and went on uncached"
