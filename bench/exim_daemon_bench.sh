#!/bin/bash
# bench/exim_daemon_bench.sh - cbv.so against Exim's built-in callout
# through a front Exim *daemon*, as in production: each SMTP connection is
# a process forked by the daemon (exim_bench.sh runs `exim -bhc`, a new
# exec each session, where the built-in reloads the system CA bundle for
# every STARTTLS callout; a daemon has it preloaded).
# Run inside the rig:  B=build tests/rig/rig.sh run -- bench/exim_daemon_bench.sh
#
# Four front daemons at once (127.0.0.71-74): no verification, the
# built-in (verify = recipient/callout=5s,no_cache), cbv.so, cbv.so with
# preload (smtp_accept_max_per_host = ${dlfunc{CBV_SO}{preload}...}).  A
# client opens a connection, HELO, MAIL FROM:<>, K RCPTs, QUIT (not
# waiting for the 221), timed until the last RCPT reply; the four are
# interleaved, BENCH_N sessions each, medians.  Per verification =
# (session - unverified session) / K.  BENCH_CBV_OPTIONS is added to
# cbv.so's options (e.g. session_reuse=no).  Prints a table; exits 0.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/exim/lib.sh"
N=${BENCH_N:-20}
if nm -D "$B/cbv.so" 2>/dev/null | grep -q '__asan_'; then
	echo "exim_daemon_bench: SKIP (sanitizer build)"
	exit 0
fi
front_setup
PIDS=()
stop_all() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.3
	front_cleanup
}
trap stop_all EXIT

cat >"$T/client.py" <<'PY'
import socket, sys, time
host, port, rcpt, k = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("closed")
        if line[3:4] != b"-":
            return line
t0 = time.monotonic()
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
reply(f)
code = ""
for cmd in [b"HELO bench.test", b"MAIL FROM:<>"] + [b"RCPT TO:<" + rcpt.encode() + b">"] * k:
    s.sendall(cmd + b"\r\n")
    r = reply(f)
    if cmd.startswith(b"RCPT"):
        code = r[:3].decode()
t1 = time.monotonic()
s.sendall(b"QUIT\r\n")
s.close()
print(int((t1 - t0) * 1e6), code)
PY

NAMES=(base builtin cbv preload)
# start_daemons PLAIN(0|1): the four daemons; builtin without TLS if PLAIN
start_daemons() {
	local i=0 c ip extra opts=
	(($1)) && opts="starttls=never"
	for c in "${NAMES[@]}"; do
		ip=127.0.0.$((71 + i))
		i=$((i + 1))
		case $c in
		base) extra=(-DFRONT_NOLOAD=1) ;;
		builtin) extra=(-DFRONT_BUILTIN=1 -DFRONT_NOLOAD=1) ;;
		cbv) extra=(-DFRONT_RCPT=1 -DCBV_NO_SETVARS=1) ;;
		preload) extra=(-DFRONT_RCPT=1 -DCBV_NO_SETVARS=1 -DFRONT_PRELOAD=1) ;;
		esac
		(($1)) && [[ $c == builtin ]] && extra+=(-DFRONT_PLAIN=1)
		"$EXIM" -C "$T/exim.conf" -DFRONT_DIR="$T" -DFRONT_SRC="$T/src" -DCBV_SO="$SO" \
			-DFRONT_IP="$ip" -DFRONT_PORT="$CBV_RIG_PORT" -DRIG_PORT="$CBV_RIG_PORT" \
			"-DCBV_RECIPIENT_OPTIONS=timeout=5s command_timeout=5s $opts ${BENCH_CBV_OPTIONS:-}" \
			"${extra[@]}" -bd -oP "$T/pid.$c" || return 1
		for ((w = 0; w < 50; w++)); do
			ss -Hltn | awk '{ print $4 }' | grep -qx "$ip:$CBV_RIG_PORT" && break
			sleep 0.1
		done
		PIDS+=("$(cat "$T/pid.$c")")
	done
}
stop_daemons() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	PIDS=()
	sleep 0.5
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) b = 1; printf "%.2f", a / b }'; }

echo "exim_daemon_bench: front Exim daemons, $N interleaved sessions per case, medians"
printf '%-34s %3s %8s %8s %8s %8s %8s %8s\n' "case (ms per verification)" "K" "builtin" "cbv.so" \
	"+preload" "ratio" "ratio+p" "codes"
for spec in "plain, fast MTA|1|x@fast.test|1" "plain, fast MTA|1|x@fast.test|5" \
	"plain, Exim MX|1|alice@exim.test|1" "plain, Exim MX|1|alice@exim.test|5" \
	"STARTTLS, Exim MX|0|alice@exim.test|1" "STARTTLS, Exim MX|0|alice@exim.test|5"; do
	IFS='|' read -r label plain rcpt k <<<"$spec"
	start_daemons "$plain" || { echo "exim_daemon_bench: daemons did not start"; exit 0; }
	rm -f "$T"/s.*
	for ((i = 0; i < N + 1; i++)); do
		j=0
		for c in "${NAMES[@]}"; do
			out=$(/usr/bin/python3 "$T/client.py" "127.0.0.$((71 + j))" "$CBV_RIG_PORT" "$rcpt" "$k")
			j=$((j + 1))
			((i == 0)) && continue # the first session of each daemon: warm-up
			echo "${out% *}" >>"$T/s.$c"
			echo "${out#* }" >>"$T/c.$c"
		done
	done
	stop_daemons
	base=$(median <"$T/s.base")
	declare -A per
	for c in builtin cbv preload; do
		v=$((($(median <"$T/s.$c") - base) / k))
		((v < 50)) && v=50
		per[$c]=$v
	done
	printf '%-34s %3s %8s %8s %8s %7sx %7sx  %s/%s/%s\n' "$label" "$k" "$(ms "${per[builtin]}")" \
		"$(ms "${per[cbv]}")" "$(ms "${per[preload]}")" "$(ratio "${per[builtin]}" "${per[cbv]}")" \
		"$(ratio "${per[builtin]}" "${per[preload]}")" "$(sort -u "$T/c.builtin" | tr '\n' ' ')" \
		"$(sort -u "$T/c.cbv" | tr '\n' ' ')" "$(sort -u "$T/c.preload" | tr '\n' ' ')"
	rm -f "$T"/c.*
done
echo "ratio = builtin / cbv.so per verification; K = verified RCPTs per connection"
