#!/bin/bash
# bench/cbvd_bench.sh - cbvd against Debian's calloutd (mailfromd 8.15) on
# the same loopback cases.  Prints numbers; asserts nothing.
#
#   sudo B=build bench/cbvd_bench.sh
#
# calloutd talks to port 25 and reads the system resolver, so everything
# runs in a private network and mount namespace (unshare -n -m): the rig
# is started there with SMTP on port 25 and dnsmasq on 127.0.0.1:53, and a
# resolv.conf naming 127.0.0.1 is bind-mounted over /etc/resolv.conf.
# Nothing is visible outside the namespace and nothing outlives it.
#
# Numbers: latency per verification (sequential, one client) over the UNIX
# socket and TCP against the fast scripted MTA and the real Exim MX; the
# tarpit bound (TIMEOUT 3 3 3 3 3 3 3); throughput with 64 concurrent
# clients against the fast MTA; memory per in-flight verification (cbvd:
# RSS growth / verifications in flight; calloutd: PSS of its processes /
# verifications in flight); several VRFYs per RUN at one domain (cbvd
# shares one SMTP session among them): verifications/s and SMTP
# connections per verification (TCP active opens in the namespace).
# CBVD_BENCH=path runs another cbvd_bench binary (e.g. against an older cbvd).
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
N=${BENCH_N:-300}

if [ -z "${CBVD_BENCH_INNER:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "cbvd_bench.sh: needs root (unshare -n -m)" >&2; exit 2; }
	command -v calloutd >/dev/null || { echo "cbvd_bench.sh: no calloutd (Debian package mailfromd)" >&2; exit 2; }
	exec env CBVD_BENCH_INNER=1 B="$B" unshare -n -m --propagation private bash "$0" "$@"
fi

set -e
ip link set lo up
W=$(mktemp -d)
chmod 755 "$W"
mkdir -m 777 "$W/sock" "$W/state"
echo "nameserver 127.0.0.1" > "$W/resolv.conf"
mount --bind "$W/resolv.conf" /etc/resolv.conf
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	CBV_RIG_PORT=25 CBV_RIG_DNS_PORT=53 B=$B "$TOP/tests/rig/rig.sh" stop "$W/rig" >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT
CBV_RIG_PORT=25 CBV_RIG_DNS_PORT=53 CBV_RIG_QUIET=1 B=$B "$TOP/tests/rig/rig.sh" start "$W/rig" >/dev/null 2>&1
set +e

cat > "$W/calloutd.conf" <<EOF
state-directory $W/state;
database cache { enable no; };
server tcp { listen "inet://127.0.0.1:5300"; };
server local { listen "unix://$W/sock/callout.sock"; };
EOF
setsid calloutd --config-file="$W/calloutd.conf" --foreground --stderr >"$W/calloutd.log" 2>&1 </dev/null &
PIDS+=($!)
cat > "$W/cbv.conf" <<EOF
smtp_cbv "default" {
  cache = ""
  dns_servers = "127.0.0.1:53"
  port = 25
  deny_networks = [ ]
  timeout = 30s
}
server {
  listen = [ "unix://$W/sock/cbvd.sock" "inet://127.0.0.1:3535" ]
  max_clients = 4096
  max_inflight = 4096
}
EOF
ulimit -n 65536 2>/dev/null || true
"$B/cbvd" -f -c "$W/cbv.conf" 2>"$W/cbvd.log" &
CBVD_PID=$!
PIDS+=("$CBVD_PID")
sleep 1
CB=${CBVD_BENCH:-$B/bench/cbvd_bench}
CBVD_TCP=inet://127.0.0.1:3535 CBVD_UNIX=unix://$W/sock/cbvd.sock
CO_TCP=inet://127.0.0.1:5300 CO_UNIX=unix://$W/sock/callout.sock

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
run() { # LABEL ARGS...
	local label=$1 out
	shift
	out=$("$CB" "$@" 2>&1 | tail -1)
	printf '%-44s %s\n' "$label" "$out" >&2
	echo "$out"
}

echo "# latency, one client, sequential (median ms)"
for case in x@fast.test alice@exim.test; do
	for srv in cbvd calloutd; do
		for tr in UNIX TCP; do
			if [ $srv = cbvd ]; then url=$([ $tr = UNIX ] && echo "$CBVD_UNIX" || echo "$CBVD_TCP")
			else url=$([ $tr = UNIX ] && echo "$CO_UNIX" || echo "$CO_TCP"); fi
			n=$N
			[ $case = alice@exim.test ] && n=$((N / 3))
			o=$(run "$srv $tr $case" -s "$url" -n "$n" "$case" 2>/dev/null)
			printf 'latency %-9s %-4s %-16s median %8s ms  p95 %8s ms  (n=%s errors=%s)\n' \
				$srv $tr $case "$(field lat_median_ms "$o")" "$(field lat_p95_ms "$o")" \
				"$(field n "$o")" "$(field errors "$o")"
		done
	done
done

echo "# tarpit, TIMEOUT 3 3 3 3 3 3 3 (one verification)"
for srv in cbvd calloutd; do
	url=$([ $srv = cbvd ] && echo "$CBVD_TCP" || echo "$CO_TCP")
	o=$("$CB" -s "$url" -n 1 -T "3 3 3 3 3 3 3" x@tarpit.test 2>&1 | tail -1)
	printf 'tarpit  %-9s %8s ms  (%s%% over the 3 s timeout) result %s\n' $srv \
		"$(field lat_max_ms "$o")" \
		"$(python3 -c "print('%.2f' % (($(field lat_max_ms "$o") - 3000) / 30.0))")" \
		"$(grep -o 'temp_failure=1\|success=1\|not_found=1\|failure=1' <<<"$o")"
done

echo "# throughput, 64 concurrent clients, fast MTA (x@fast.test)"
for srv in cbvd calloutd; do
	url=$([ $srv = cbvd ] && echo "$CBVD_TCP" || echo "$CO_TCP")
	n=$((N * 20))
	[ $srv = calloutd ] && n=$((N * 5))
	o=$("$CB" -s "$url" -c 64 -n "$n" x@fast.test 2>&1 | tail -1)
	printf 'throughput %-9s %10s verifications/s  (n=%s errors=%s median %s ms)\n' $srv \
		"$(field rate "$o")" "$(field n "$o")" "$(field errors "$o")" "$(field lat_median_ms "$o")"
done

echo "# memory per in-flight verification (tarpit holds them open)"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
pss_calloutd() {
	local sum=0 p v
	for p in $(pgrep -x calloutd); do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo $sum
}
K=1000
r0=$(rss_kb "$CBVD_PID")
# 12 s of tarpit, sampled at 6 s: on a loaded machine 3 s saw only ~200 of the 1000 in flight
"$CB" -s "$CBVD_TCP" -c $K -n $K -T "12 12 12 12 12 12 12" x@tarpit.test >/dev/null 2>&1 &
bp=$!
sleep 6
r1=$(rss_kb "$CBVD_PID")
inflight=$(ss -Htn state established dst 127.0.0.20 | wc -l)
wait $bp
printf 'memory  cbvd      %6.1f kB per in-flight verification (RSS %s -> %s kB, %s in flight)\n' \
	"$(python3 -c "print(($r1 - $r0) / max($inflight, 1))")" "$r0" "$r1" "$inflight"
K=100
p0=$(pss_calloutd)
"$CB" -s "$CO_TCP" -c $K -n $K -T "6 6 6 6 6 6 6" x@tarpit.test >/dev/null 2>&1 &
bp=$!
sleep 3
p1=$(pss_calloutd)
inflight=$(ss -Htn state established dst 127.0.0.20 | wc -l)
wait $bp
printf 'memory  calloutd  %6.1f kB per in-flight verification (PSS %s -> %s kB, %s in flight, one process each)\n' \
	"$(python3 -c "print(($p1 - $p0) / max($inflight, 1))")" "$p0" "$p1" "$inflight"

echo "# K VRFYs per RUN at one domain, 64 clients, fast MTA (a..e@fast.test)"
# every connect(2) in this namespace: bench -> server once per client, server -> MTA per session
tcp_opens() { awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ActiveOpens") c = i; h = 1 } else print $c }' /proc/net/snmp; }
for k in 1 5 32; do
	for srv in cbvd calloutd; do
		url=$([ $srv = cbvd ] && echo "$CBVD_TCP" || echo "$CO_TCP")
		n=$((N * 20))
		[ $srv = calloutd ] && n=$((N * 5))
		a0=$(tcp_opens)
		o=$("$CB" -s "$url" -c 64 -n "$n" -b $k a@fast.test b@fast.test c@fast.test d@fast.test \
			e@fast.test 2>&1 | tail -1)
		a1=$(tcp_opens)
		printf 'per-RUN %-2s %-9s %10s verifications/s  %6s SMTP connections per verification  (n=%s errors=%s median %s ms)\n' \
			$k $srv "$(field rate "$o")" \
			"$(python3 -c "print('%.3f' % (($a1 - $a0 - 64) / max($(field n "$o"), 1)))")" \
			"$(field n "$o")" "$(field errors "$o")" "$(field lat_median_ms "$o")"
	done
done
