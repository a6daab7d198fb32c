#!/bin/bash
# A fleet of MX hosts sharing one Redis (issue 8), end to end through real
# processes: a real redis-server on loopback (started and stopped here),
# two Exim "hosts" (exim-conf's RCPT ACL and cbv.so, primary_hostname
# mx1.fleet.test and mx2.fleet.test, host B with a helo of its own, no
# local cache) and two cbvd instances, all with cache = redis://...
#
#   1. a verification on one host is a hit on the others; the MX saw one RCPT
#   2. a storm over the four of them: one callout per address; a rate cap
#      of 3/1m shared by all: exactly 3 RCPTs, the rest transient/rate_limited
#   3. Redis SIGKILLed, then SIGSTOPped, mid-run: right verdicts all along,
#      one outage line per process, and - without restarting Exim's long
#      session or cbvd - a recovery line and caching again; cache_fallback
#      (a local LMDB shared by host A's processes while Redis is down)
#   4. AUTH: wrong password, right one, a password file others can read;
#      the secret in no log and not in `cbv check-config`
#   5. bad input: a scripted fake Redis answering garbage; keys holding a
#      value of the wrong type, another format version, damaged, too large
#
# RCPTs are counted at the rig's counting servers ($CBV_RIG_DIR/rcpt.log);
# verdicts are compared with the expected verdict per address (count.test:
# "unknown*" is 550 5.1.1, anything else 250).  No timing assertions.
# Under the sanitizer build (cbv.so cannot be loaded into Exim) the Exim
# hosts are left out and cbvd carries the test alone.
# shellcheck disable=SC2016  # single-quoted commands are eval'ed later, on purpose
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
need_rig
CBV=$B/cbv
CBVD=$B/cbvd
need_built "$CBV" "$CBVD"
PY=/usr/bin/python3
for c in redis-server redis-cli; do
	if ! command -v "$c" >/dev/null; then
		bad "$c installed (Debian package redis-server, tools/deps.sh)"
		summary
		exit 1
	fi
done

EXIM_OK=1
if [[ ! -e $B/cbv.so ]] || nm -D "$B/cbv.so" 2>/dev/null | grep -q '__asan_\|__ubsan_'; then
	EXIM_OK=0
	skip "Exim hosts: no cbv.so, or a sanitizer build (cbvd alone below)"
fi

W=$(mktemp -d /tmp/cbv-fleet.XXXXXX)
chmod 755 "$W"
declare -A RPID=() # redis-server pids by port
CPIDS=()           # cbvd, fake Redis, live Exim session: stopped by cleanup
TA='' TB=''
cleanup() {
	local p
	exec 7>&- 2>/dev/null
	for p in "${RPID[@]}"; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
	for p in "${CPIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${RPID[@]}" "${CPIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [[ ${KEEP_FLEET:-0} == 1 ]]; then
		echo "# fleet state kept in $W $TA $TB" >&2
		return 0
	fi
	rm -rf "$W"
	[[ $TA == /tmp/cbv-front.* ]] && rm -rf "$TA"
	[[ $TB == /tmp/cbv-front.* ]] && rm -rf "$TB"
}
trap cleanup EXIT

# ---- Redis ----

# new_port VAR: a free loopback port no other part of the test was given
declare -A USED=()
new_port() {
	local p
	p=$(free_port)
	while [[ -n ${USED[$p]:-} ]]; do p=$(free_port); done
	USED[$p]=1
	printf -v "$1" '%s' "$p"
}
new_port RP  # the fleet's Redis
new_port RPA # the one with requirepass
SECRET="fleet-$RANDOM$RANDOM-$$-secret"

# redis_start PORT [ARGS...]: a redis-server on 127.0.0.1:PORT, no
# persistence; waits until it answers (PONG, or NOAUTH with requirepass).
redis_start() {
	local port=$1 i a
	shift
	mkdir -p "$W/redis-$port"
	redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
		--dir "$W/redis-$port" --daemonize no --logfile "$W/redis-$port/log" "$@" \
		</dev/null >/dev/null 2>&1 &
	RPID[$port]=$!
	for ((i = 0; i < 100; i++)); do
		a=$(redis-cli -h 127.0.0.1 -p "$port" ping 2>&1)
		[[ $a == PONG || $a == *NOAUTH* ]] && return 0
		kill -0 "${RPID[$port]}" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
redis_kill() { # PORT SIGNAL
	kill "-$2" "${RPID[$1]}" 2>/dev/null
	if [[ $2 == KILL ]]; then
		wait "${RPID[$1]}" 2>/dev/null
		unset "RPID[$1]"
	fi
}
rcli() { redis-cli -h 127.0.0.1 -p "$RP" "$@"; }

if redis_start "$RP"; then ok "redis-server up on 127.0.0.1:$RP"; else
	bad "redis-server up" "$(cat "$W/redis-$RP/log" 2>/dev/null)"
	summary
	exit 1
fi
if redis_start "$RPA" --requirepass "$SECRET"; then ok "redis-server with requirepass up"; else
	bad "redis-server with requirepass up" "$(cat "$W/redis-$RPA/log" 2>/dev/null)"
fi

# ---- a scripted fake Redis: garbage and wrong replies ----

# Modes: a reply to every command; pong_X: +PONG to the first (connect
# succeeds), then X to the lookups, scripts and stores.
MODES=(garbage int huge err pong_garbage pong_int pong_nil pong_deep pong_err)
declare -A FPORT=()
fargs=()
for m in "${MODES[@]}"; do
	new_port port
	FPORT[$m]=$port
	fargs+=("${FPORT[$m]}=$m")
done
cat >"$W/fakeredis.py" <<'PY'
# fakeredis.py PIDFILE PORT=MODE...: answers every command (whatever it is)
# with a MODE reply, on 127.0.0.1 only.
import socket, sys, threading, os
REPLY = {
    "garbage": b"\x00\xff\x13garbage\x80\r\n?!*-1\r\n#bad\r\n",
    "int": b":1\r\n",                          # well-formed, never the type we want
    "huge": b"$2147483647\r\nxxxxxxxx",        # a bulk string larger than anything
    "err": b"-ERR this is not a Redis\r\n",
    "nil": b"$-1\r\n",
    "deep": b"*1\r\n" * 64 + b":1\r\n",     # arrays nested deeper than hiredis allows
}
def serve(conn, mode):
    n = 0
    try:
        while True:
            d = conn.recv(65536)
            if not d:
                break
            n += 1
            if mode.startswith("pong_"):
                conn.sendall(b"+PONG\r\n" if n == 1 else REPLY[mode[5:]])
            else:
                conn.sendall(REPLY[mode])
    except OSError:
        pass
    conn.close()
def listen(port, mode):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, mode), daemon=True).start()
open(sys.argv[1], "w").write(str(os.getpid()))
ts = []
for a in sys.argv[2:]:
    p, m = a.split("=")
    t = threading.Thread(target=listen, args=(int(p), m), daemon=True)
    t.start()
    ts.append(t)
for t in ts:
    t.join()
PY
$PY "$W/fakeredis.py" "$W/fakeredis.pid" "${fargs[@]}" >"$W/fakeredis.log" 2>&1 &
CPIDS+=($!)

# ---- the password files (Exim and cbvd run as Debian-exim) ----

mkdir "$W/auth"
printf '%s\n' "$SECRET" >"$W/auth/right"
printf '%s\n' "not-$SECRET-either" >"$W/auth/wrong"
printf '%s\n' "$SECRET" >"$W/auth/loose"
chmod 600 "$W/auth/right" "$W/auth/wrong"
chmod 640 "$W/auth/loose"
cbvd_dirs "$W/auth/right" "$W/auth/wrong" "$W/auth/loose"
# the local LMDB fallback of host A (cbvd1 and Exim A), as /var/spool/exim4/db
mkdir "$W/fb"
cbvd_dirs "$W/fb"
chmod 750 "$W/fb"

# ---- profiles: the same on every host but for the helo ----

# fleet_conf HELO_LINE: the fleet's profiles (rig DNS and port), one per test.
fleet_conf() {
	# cache_timeout 1s, not 100ms: a loaded test machine must not look like
	# an outage (the outages here are real ones)
	local ct=('cache_timeout = 1s')
	local hl=("$@") redis="redis://127.0.0.1:$RP" off=('domain_max_rate = 0' 'domain_max_concurrency = 0' 'host_max_concurrency = 0')
	rig_profile fleet 'timeout = 20s' "${ct[@]}" "cache = \"$redis\"" 'cache_prefix = "fleet:"' "${off[@]}" "${hl[@]}"
	rig_profile rate 'timeout = 20s' "${ct[@]}" "cache = \"$redis\"" 'cache_prefix = "rate:"' \
		'domain_max_rate = 3/1m' 'domain_max_concurrency = 0' 'host_max_concurrency = 0' "${hl[@]}"
	rig_profile outage 'timeout = 20s' "${ct[@]}" "cache = \"$redis\"" 'cache_prefix = "out:"' "${off[@]}" "${hl[@]}"
	rig_profile outfb 'timeout = 20s' "${ct[@]}" "cache = \"$redis\"" 'cache_prefix = "outfb:"' \
		"cache_fallback = \"$W/fb/cbv\"" "${off[@]}" "${hl[@]}"
	# one prefix each: a process keeps one handle per Redis URL and prefix,
	# with the options of the first profile that used it, and at most 8
	# (core/cbv_verify.c CACHES_MAX): cbvd1 and cbvd2 use 8 each
	for a in right wrong loose; do
		rig_profile "auth$a" 'timeout = 20s' "${ct[@]}" "cache = \"redis://127.0.0.1:$RPA\"" \
			"cache_prefix = \"auth$a:\"" "cache_password_file = \"$W/auth/$a\"" "${off[@]}" "${hl[@]}"
	done
	for m in "${MODES[@]}"; do
		rig_profile "$m" 'timeout = 20s' "${ct[@]}" "cache = \"redis://127.0.0.1:${FPORT[$m]}\"" "${off[@]}" "${hl[@]}"
	done
	rig_profile bad 'timeout = 20s' "${ct[@]}" "cache = \"$redis\"" 'cache_prefix = "bad:"' "${off[@]}" "${hl[@]}"
	rig_profile badrate 'timeout = 20s' "${ct[@]}" "cache = \"$redis\"" 'cache_prefix = "bad:"' \
		'domain_max_rate = 100/1m' 'domain_max_concurrency = 50' "${hl[@]}"
}

# ---- the Exim hosts: A (mx1.fleet.test) and B (mx2.fleet.test) ----

# host_setup HOSTNAME HELO_LINE...: front_setup with primary_hostname
# HOSTNAME and the fleet's profiles; its directory in T, its args in FRONT_ARGS.
host_setup() {
	local name=$1
	shift
	front_setup
	sed -i "s/^primary_hostname = .*/primary_hostname = $name/" "$T/exim.conf"
	fleet_conf "$@" >>"$T/cbv.conf"
}
if ((EXIM_OK)); then
	host_setup mx1.fleet.test
	TA=$T ARGS_A=("${FRONT_ARGS[@]}")
	host_setup mx2.fleet.test 'helo = "mx2-helo.fleet.test"'
	TB=$T ARGS_B=("${FRONT_ARGS[@]}")
	T=$TA # mark and newlog: host A's mainlog (T=$TB mark: B's)
	LOGA=$TA/log/mainlog LOGB=$TB/log/mainlog
	if grep -q '^primary_hostname = mx2.fleet.test$' "$TB/exim.conf"; then ok "host B: its own primary_hostname"; else
		bad "host B: its own primary_hostname"; fi
fi

# xs A|B PROFILE RCPT...: one exim -bs session (a new Exim process) on
# host A or B, each RCPT verified by the RCPT ACL ("--" between RCPTs: a
# new message, RSET and MAIL); Exim's replies in $out.
xs() {
	local host=$1 prof=$2 r lines=()
	shift 2
	for r in "$@"; do
		if [[ $r == -- ]]; then lines+=(RSET "MAIL FROM:<>"); else lines+=("RCPT TO:<$r>"); fi
	done
	if [[ $host == A ]]; then FRONT_ARGS=("${ARGS_A[@]}"); else FRONT_ARGS=("${ARGS_B[@]}"); fi
	out=$(bs_session -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=profile=$prof" -- \
		"HELO client.test" "MAIL FROM:<>" "${lines[@]}" QUIT)
}

# ---- the cbvd instances ----

cat >"$W/cq.py" <<'PY'
# cq.py URL PROFILE ADDRESS...: one connection to cbvd; per address VRFY and
# RUN; prints "ADDRESS STATUS REASON" (from the XCBV lines) per address.
import socket, sys
url, prof, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
h, p = url[len("inet://"):].rsplit(":", 1)
s = socket.create_connection((h, int(p)))
s.settimeout(90)
f = s.makefile("rb")
def line():
    l = f.readline()
    if not l:
        raise SystemExit("cq: connection closed")
    return l.decode("latin1").rstrip("\r\n")
def cmd(c):
    s.sendall(c.encode("latin1") + b"\r\n")
    return line()
line()
if not cmd('SET PROFILE="%s"' % prof).startswith("OK"):
    raise SystemExit("cq: SET PROFILE refused")
for a in addrs:
    if not cmd('VRFY "%s"' % a).startswith("OK"):
        raise SystemExit("cq: VRFY refused")
    s.sendall(b"RUN\r\n")
    st = rs = "-"
    while True:
        l = line()
        w = l.split(" ", 4)
        if w[0] != "*":
            break
        if len(w) == 5 and w[2] == "XCBV" and w[3] == "status":
            st = w[4]
        elif len(w) == 5 and w[2] == "XCBV" and w[3] == "reason":
            rs = w[4]
    print(a, st, rs, flush=True)
cmd("QUIT")
PY

declare -A CURL=() CLOG=() CPID=()
# cbvd_up NAME HELO: a cbvd with the fleet's profiles and its own helo.
cbvd_up() {
	local name=$1 port
	new_port port
	{
		fleet_conf "helo = \"$2\""
		printf 'server {\n  listen = [ "inet://127.0.0.1:%s" ]\n  max_clients = 200\n  max_inflight = 512\n}\n' "$port"
	} >"$W/$name.conf"
	chmod 644 "$W/$name.conf"
	CURL[$name]=inet://127.0.0.1:$port
	CLOG[$name]=$W/$name.log
	if cbvd_start "$CBVD" "${CLOG[$name]}" -c "$W/$name.conf"; then
		CPID[$name]=$CBVD_PID
		CPIDS+=("$CBVD_PID")
		ok "$name starts"
	else
		[[ -n ${CBVD_PID:-} ]] && CPIDS+=("$CBVD_PID")
		bad "$name starts" "$(cat "${CLOG[$name]}")"
		summary
		exit 1
	fi
}
cbvd_up cbvd1 cbvd1.fleet.test
cbvd_up cbvd2 cbvd2.fleet.test

# cq NAME PROFILE ADDRESS...: verify through cbvd NAME; "ADDR STATUS REASON" lines in $out.
cq() {
	local name=$1
	shift
	out=$(timeout 120 "$PY" "$W/cq.py" "${CURL[$name]}" "$@" 2>&1)
}

# ---- what to expect ----

rcpts() { grep -cF " <$1>" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
want() { [[ ${1%%@*} == unknown* ]] && echo fail/mailbox_unknown || echo pass/accepted; }
want_code() { [[ ${1%%@*} == unknown* ]] && echo 550 || echo 250; }
# vlines ADDRESS LOG...: the core's verification lines for ADDRESS as
# "verdict/reason cache"
vlines() {
	local a=$1
	shift
	cat "$@" 2>/dev/null | grep -F "cbv: <$a> " |
		sed -E 's/.* ([a-z]+\/[a-z_]+) host=.* cache=([a-z]+).*/\1 \2/'
}
# cq_right N: $out has N lines, each with the expected verdict for its address.
cq_right() {
	local a st rs n=0
	while read -r a st rs; do
		[[ $st/$rs == "$(want "$a")" ]] || return 1
		n=$((n + 1))
	done <<<"$out"
	((n == $1))
}
# xs_right ADDRESS...: Exim answered each RCPT (in order) with its expected code.
xs_right() {
	local a codes=() got
	for a in "$@"; do [[ $a == -- ]] || codes+=("$(want_code "$a")"); done
	# the last line of each reply but the greeting's, HELO's, MAIL's, RSET's and QUIT's
	got=$(grep -E '^[0-9]{3} ' <<<"$out" | grep -vE '^(220|221) |^250 OK$|^250 Reset OK$|^250 .* Hello ' |
		cut -c1-3 | tr '\n' ' ')
	[[ $got == "${codes[*]} " ]]
}
alive() { kill -0 "${CPID[$1]}" 2>/dev/null; }
ALL_LOGS() { printf '%s\n' "${CLOG[@]}"; ((EXIM_OK)) && printf '%s\n' "$LOGA" "$LOGB" "$TA/log/paniclog" "$TB/log/paniclog"; }
# all_vlines ADDRESS: vlines over every host's log
all_vlines() {
	local logs
	mapfile -t logs < <(ALL_LOGS)
	vlines "$1" "${logs[@]}"
}

ID=f$$
# ================= 1. a hit on one host is a hit on the others =================

if ((EXIM_OK)); then
	G1=share1-$ID@count.test U1=unknown-share1-$ID@count.test
	xs A fleet "$G1" "$U1"
	DETAIL=$out check "A: $G1 250, $U1 550" xs_right "$G1" "$U1"
	expect_text "A: both verified, cache=miss" "$(vlines "$G1" "$LOGA"; vlines "$U1" "$LOGA")" \
		'^pass/accepted miss$' '^fail/mailbox_unknown miss$'
	xs B fleet "$G1" "$U1"
	DETAIL=$out check "B: $G1 250, $U1 550" xs_right "$G1" "$U1"
	expect_text "B (another primary_hostname and helo): both are hits" \
		"$(vlines "$G1" "$LOGB"; vlines "$U1" "$LOGB")" '^pass/accepted hit$' '^fail/mailbox_unknown hit$'
	check "A then B: one RCPT for $G1 at the MX" test "$(rcpts "$G1")" -eq 1
	check "A then B: one RCPT for $U1 at the MX" test "$(rcpts "$U1")" -eq 1
	# the other way round, and Exim with cbvd
	G2=share2-$ID@count.test
	xs B fleet "$G2"
	xs A fleet "$G2"
	cq cbvd1 fleet "$G2"
	DETAIL=$out check "B, A, cbvd1: $G2 pass everywhere" cq_right 1
	expect_text "B miss, then A and cbvd1 hits" \
		"$(vlines "$G2" "$LOGB"; echo --; vlines "$G2" "$LOGA" "${CLOG[cbvd1]}")" \
		'^pass/accepted miss$'$'\n''--$'$'\n''^pass/accepted hit$'$'\n''^pass/accepted hit$'
	check "B, A, cbvd1: one RCPT for $G2" test "$(rcpts "$G2")" -eq 1
	if grep -q 'fakesmtp: #[0-9]* < EHLO' "$CBV_RIG_DIR/fakesmtp.log" 2>/dev/null; then
		l=$(grep -E '< EHLO (mx1|mx2-helo)\.fleet\.test' "$CBV_RIG_DIR/fakesmtp.log" | sed 's/.*< //' | sort -u)
		expect_text "the MX saw each host's own EHLO name" "$l" '^EHLO mx1\.fleet\.test$' '^EHLO mx2-helo\.fleet\.test$'
	fi
fi
G3=share3-$ID@count.test U3=unknown-share3-$ID@count.test
cq cbvd1 fleet "$G3" "$U3"
DETAIL=$out check "cbvd1: $G3 pass, $U3 fail" cq_right 2
cq cbvd2 fleet "$G3" "$U3"
DETAIL=$out check "cbvd2: $G3 pass, $U3 fail" cq_right 2
expect_text "cbvd1 misses, cbvd2 hits" "$(vlines "$G3" "${CLOG[cbvd1]}" "${CLOG[cbvd2]}"; vlines "$U3" "${CLOG[cbvd1]}" "${CLOG[cbvd2]}")" \
	'^pass/accepted miss$'$'\n''^pass/accepted hit$'$'\n''^fail/mailbox_unknown miss$'$'\n''^fail/mailbox_unknown hit$'
check "cbvd1 then cbvd2: one RCPT each" test "$(rcpts "$G3")$(rcpts "$U3")" = 11
n=$(rcli --scan --pattern 'fleet:A:count.test:*' | wc -l)
DETAIL="$n keys" check "the records are in Redis under the prefix (fleet:A:count.test:...)" test "$n" -ge 2

# ================= 2. a storm over every host; a shared rate cap =================

# slowcount.test answers its greeting 2 s late, so the verifications overlap.
S=("storm1-$ID@slowcount.test" "storm2-$ID@slowcount.test" "unknown-storm3-$ID@slowcount.test")
mkdir "$W/storm"
k=0 SPIDS=()
for h in A B; do
	((EXIM_OK)) || continue
	for ((i = 0; i < 6; i++, k++)); do
		r=$((k % 3))
		(xs "$h" fleet "${S[r]}" "${S[(r + 1) % 3]}" "${S[(r + 2) % 3]}"
			printf '%s\n' "$out" >"$W/storm/x$k"
			printf '%s\n' "${S[r]}" "${S[(r + 1) % 3]}" "${S[(r + 2) % 3]}" >"$W/storm/x$k.order") &
		SPIDS+=($!)
	done
done
for c in cbvd1 cbvd2; do
	for ((i = 0; i < 6; i++, k++)); do
		r=$((k % 3))
		(cq "$c" fleet "${S[r]}" "${S[(r + 1) % 3]}" "${S[(r + 2) % 3]}"
			printf '%s\n' "$out" >"$W/storm/c$k") &
		SPIDS+=($!)
	done
done
wait "${SPIDS[@]}"
nv=0 wrong=()
for f in "$W"/storm/c*; do
	while read -r a st rs; do
		nv=$((nv + 1))
		[[ $st/$rs == "$(want "$a")" ]] || wrong+=("cbvd $a $st/$rs")
	done <"$f"
done
if ((EXIM_OK)); then
	for f in "$W"/storm/x*; do
		[[ $f == *.order ]] && continue
		mapfile -t ord <"$f.order"
		out=$(cat "$f")
		if xs_right "${ord[@]}"; then nv=$((nv + 3)); else wrong+=("exim ${f##*/}: $(tr '\n' '|' <"$f")"); fi
	done
fi
want_nv=$((EXIM_OK ? 72 : 36))
DETAIL=$(printf '%s\n' "${wrong[@]}") check "storm: all $want_nv verifications right" test "$nv" -eq "$want_nv" -a ${#wrong[@]} -eq 0
for a in "${S[@]}"; do
	check "storm: one RCPT for $a at the MX" test "$(rcpts "$a")" -eq 1
done
n=$(for a in "${S[@]}"; do all_vlines "$a"; done | grep -c ' miss$')
check "storm: one cache miss per address over all hosts" test "$n" -eq 3

# domain_max_rate = 3/1m, the bucket in Redis: 8 new addresses at once over the hosts.
R=()
for ((i = 1; i <= 8; i++)); do R+=("rate$i-$ID@count2.test"); done
mkdir "$W/rate"
i=0 SPIDS=()
for h in A B cbvd1 cbvd2; do
	for _ in 0 1; do
		a=${R[i]}
		if [[ $h == cbvd* ]]; then
			(cq "$h" rate "$a"; printf '%s\n' "$out" >"$W/rate/$i") &
		elif ((EXIM_OK)); then
			(xs "$h" rate "$a"; grep -E '^(250 Accepted|451|550)' <<<"$out" | sed "s/^/$a /" >"$W/rate/$i") &
		else
			(cq cbvd1 rate "$a"; printf '%s\n' "$out" >"$W/rate/$i") &
		fi
		SPIDS+=($!)
		i=$((i + 1))
	done
done
wait "${SPIDS[@]}"
res=$(cat "$W"/rate/*)
np=$(grep -cE ' (pass accepted|250 Accepted)' <<<"$res")
nl=$(grep -cE ' (transient rate_limited|451 )' <<<"$res")
n=0
for a in "${R[@]}"; do n=$((n + $(grep -cF " <$a>" "$CBV_RIG_DIR/rcpt.log"))); done
DETAIL=$res check "rate 3/1m shared by 4 hosts: exactly 3 RCPTs reached the MX" test "$n" -eq 3
DETAIL=$res check "rate: 3 passed, 5 deferred" test "$np" -eq 3 -a "$nl" -eq 5
n=$(for a in "${R[@]}"; do all_vlines "$a"; done | grep -c '^transient/rate_limited ')
DETAIL=$(for a in "${R[@]}"; do all_vlines "$a"; done) check "rate: the 5 are transient/rate_limited in the logs" test "$n" -eq 5

# ================= 3. Redis killed, then stopped, mid-run =================

# outage_lines LOG... / recovery_lines LOG...: how many of each for the fleet's Redis.
URL_RE="cache redis://127\\.0\\.0\\.1:$RP"
outage_lines() { cat "$@" 2>/dev/null | grep -cE "$URL_RE: .*retrying with backoff; verifying without it"; }
recovery_lines() { cat "$@" 2>/dev/null | grep -cE "$URL_RE: reachable again"; }

# A long Exim session on host A (one process through the outage), fed by a FIFO.
live_replies() { tr -d '\r' <"$W/live.out" | grep -E '^[0-9]{3} '; }
live_rcpt() { # ADDRESS: one RCPT in the live session; its reply code in $code
	local n i
	n=$(live_replies | wc -l)
	printf 'RCPT TO:<%s>\r\n' "$1" >&7
	code=
	for ((i = 0; i < 1200; i++)); do
		if (($(live_replies | wc -l) > n)); then
			code=$(live_replies | tail -n 1 | cut -c1-3)
			return 0
		fi
		sleep 0.05
	done
	return 1
}
LIVE=0
if ((EXIM_OK)); then
	mkfifo "$W/live.in"
	FRONT_ARGS=("${ARGS_A[@]}")
	front -DFRONT_RCPT=1 -DCBV_RECIPIENT_OPTIONS=profile=outage -bs <"$W/live.in" >"$W/live.out" 2>&1 &
	CPIDS+=($!)
	exec 7>"$W/live.in"
	printf 'HELO client.test\r\nMAIL FROM:<>\r\n' >&7
	LIVE=1
fi

# outage_run KIND PROFILE: the outage test with Redis sent SIGKILL or SIGSTOP.
outage_run() {
	local kind=$1 prof=$2 p=${1,,}-$ID i a ma mb n3
	local O1=${p}o1@count.test O2=${p}o2@count.test O3=unknown-${p}o3@count.test O4=${p}o4@count.test
	local O5=${p}o5@count.test
	local c1o c2o c1r c2r
	# cached before the outage
	cq cbvd1 "$prof" "$O1"
	cq cbvd2 "$prof" "$O1"
	expect_text "$kind: $O1 cached before the outage" "$(vlines "$O1" "${CLOG[cbvd1]}" "${CLOG[cbvd2]}")" \
		'^pass/accepted miss$'$'\n''^pass/accepted hit$'
	c1o=$(outage_lines "${CLOG[cbvd1]}") c2o=$(outage_lines "${CLOG[cbvd2]}")
	c1r=$(recovery_lines "${CLOG[cbvd1]}") c2r=$(recovery_lines "${CLOG[cbvd2]}")
	((EXIM_OK)) && { T=$TA mark; ma=$MARK; }

	# in the middle of a run: verifications at slowcount.test (its greeting
	# 2 s late) in flight on cbvd1, cbvd2 and two Exim sessions on host B
	# when Redis goes; each must still end with its verdict
	local M=("${p}m1@slowcount.test" "${p}m2@slowcount.test" "unknown-${p}m3@slowcount.test")
	local pids=() wrong=() w
	rm -rf "$W/mid"
	mkdir "$W/mid"
	for w in cbvd1 cbvd2 B B; do
		[[ $w == B ]] && ((!EXIM_OK)) && continue
		if [[ $w == B ]]; then
			(xs B "$prof" "${M[@]}"; printf '%s\n' "$out" >"$W/mid/x${#pids[@]}") &
		else
			(cq "$w" "$prof" "${M[@]}"; printf '%s\n' "$out" >"$W/mid/c${#pids[@]}") &
		fi
		pids+=($!)
	done
	sleep 1

	if [[ $kind == SIGKILL ]]; then redis_kill "$RP" KILL; else redis_kill "$RP" STOP; fi

	wait "${pids[@]}"
	for w in "$W"/mid/*; do
		out=$(cat "$w")
		if [[ ${w##*/} == x* ]]; then xs_right "${M[@]}" || wrong+=("$out"); else cq_right 3 || wrong+=("$out"); fi
	done
	DETAIL=$(printf '%s\n' "${wrong[@]}") check "$kind mid-run: the ${#pids[@]} runs in flight ended with the right verdicts" \
		test "${#wrong[@]}" -eq 0 -a "$(find "$W/mid" -type f | wc -l)" -eq "${#pids[@]}"
	((EXIM_OK)) && { T=$TB mark; mb=$MARK; }

	# during the outage: every host verifies, verdicts right
	cq cbvd1 "$prof" "$O1" "$O2" "$O3" "$O4"
	DETAIL=$out check "$kind: cbvd1 verdicts right during the outage" cq_right 4
	cq cbvd2 "$prof" "$O2" "$O3" "$O4" "$O1"
	DETAIL=$out check "$kind: cbvd2 verdicts right during the outage" cq_right 4
	cq cbvd1 "$prof" "$O2" "$O3"
	DETAIL=$out check "$kind: cbvd1 again, right" cq_right 2
	check "$kind: cbvd1 logged the outage once" test "$(outage_lines "${CLOG[cbvd1]}")" -eq $((c1o + 1))
	check "$kind: cbvd2 logged the outage once" test "$(outage_lines "${CLOG[cbvd2]}")" -eq $((c2o + 1))
	n=$(vlines "$O2" "${CLOG[cbvd1]}" "${CLOG[cbvd2]}" | grep -c '^pass/accepted off$')
	check "$kind: during the outage cbvd verifies uncached (cache=off)" test "$n" -eq 3
	check "$kind: $O1 called out again while Redis was away" test "$(rcpts "$O1")" -ge 2
	if ((EXIM_OK)); then
		xs B "$prof" "$O2" "$O3" -- "$O4" "$O1"
		DETAIL=$out check "$kind: Exim host B (a new process) right during the outage" xs_right "$O2" "$O3" -- "$O4" "$O1"
		l=$(tail -n +$((mb + 1)) "$LOGB")
		DETAIL=$l check "$kind: host B: one outage line for its two messages" test "$(outage_lines <(echo "$l"))" -eq 1
		for a in "$O2" "$O4"; do
			live_rcpt "$a"
			check "$kind: live session on A: $a 250 during the outage" test "$code" = 250
		done
		live_rcpt "$O3"
		check "$kind: live session on A: $O3 550 during the outage" test "$code" = 550
		l=$(tail -n +$((ma + 1)) "$LOGA")
		DETAIL=$l check "$kind: live session on A: one outage line" test "$(outage_lines <(echo "$l"))" -eq 1
	fi

	if [[ $kind == SIGKILL ]]; then redis_start "$RP" || bad "$kind: Redis restarted"; else redis_kill "$RP" CONT; fi

	# recovery, without restarting anything: poll with new addresses until
	# each long-lived process has logged it (backoff 1 s, doubling)
	local rec=0
	for ((i = 0; i < 80; i++)); do
		a=${p}w$i@count.test
		cq cbvd1 "$prof" "$a"
		cq_right 1 || bad "$kind: cbvd1 right while recovering ($a)" "$out"
		cq cbvd2 "$prof" "$a"
		cq_right 1 || bad "$kind: cbvd2 right while recovering ($a)" "$out"
		if ((LIVE)); then
			live_rcpt "$a"
			[[ $code == 250 ]] || bad "$kind: live session right while recovering ($a)" "$code"
		fi
		if (($(recovery_lines "${CLOG[cbvd1]}") > c1r && $(recovery_lines "${CLOG[cbvd2]}") > c2r)); then
			if ((!LIVE)) || (($(recovery_lines <(tail -n +$((ma + 1)) "$LOGA")) > 0)); then
				rec=1
				break
			fi
		fi
		sleep 0.25
	done
	check "$kind: cbvd1 logged the recovery once" test "$(recovery_lines "${CLOG[cbvd1]}")" -eq $((c1r + 1))
	check "$kind: cbvd2 logged the recovery once" test "$(recovery_lines "${CLOG[cbvd2]}")" -eq $((c2r + 1))
	check "$kind: still one outage line in cbvd1 and in cbvd2" \
		test "$(outage_lines "${CLOG[cbvd1]}")$(outage_lines "${CLOG[cbvd2]}")" = "$((c1o + 1))$((c2o + 1))"
	if ((LIVE)); then
		l=$(tail -n +$((ma + 1)) "$LOGA")
		DETAIL=$l check "$kind: live session on A: one recovery line, still one outage line" \
			test "$(recovery_lines <(echo "$l"))$(outage_lines <(echo "$l"))" = 11
	fi
	check "$kind: every process back within the wait" test "$rec" -eq 1

	# caching again: a repeat is a hit, the RCPT count stays
	cq cbvd1 "$prof" "$O5"
	cq cbvd2 "$prof" "$O5"
	DETAIL=$out check "$kind: after: cbvd2 right" cq_right 1
	n3=$(rcpts "$O3")
	cq cbvd1 "$prof" "$O3"
	DETAIL=$out check "$kind: after: cbvd1 $O3 right" cq_right 1
	cq cbvd2 "$prof" "$O3"
	DETAIL=$out check "$kind: after: cbvd2 $O3 right" cq_right 1
	if ((LIVE)); then
		live_rcpt "$O5"
		check "$kind: after: live session $O5 250" test "$code" = 250
		live_rcpt "$O3"
		check "$kind: after: live session $O3 550" test "$code" = 550
	fi
	check "$kind: after: one RCPT for $O5 (cbvd1 miss, the rest hits)" test "$(rcpts "$O5")" -eq 1
	check "$kind: after: one more RCPT for $O3 (the rest hits)" test "$(rcpts "$O3")" -eq $((n3 + 1))
	n=$( (vlines "$O5" "${CLOG[cbvd2]}"; ((LIVE)) && vlines "$O5" "$LOGA") | grep -c '^pass/accepted hit$')
	check "$kind: after: the repeats of $O5 are hits" test "$n" -eq $((LIVE ? 2 : 1))
	n=$( (vlines "$O3" "${CLOG[cbvd2]}" | tail -n 1; ((LIVE)) && vlines "$O3" "$LOGA" | tail -n 1) | sort -u)
	check "$kind: after: the repeats of $O3 are hits" test "$n" = "fail/mailbox_unknown hit"
	check "$kind: both cbvd alive" eval 'alive cbvd1 && alive cbvd2'
}
outage_run SIGKILL outage
outage_run SIGSTOP outage

# cache_fallback: while Redis is down, host A's processes share a local LMDB
F1=fallback1-$ID@count.test
redis_kill "$RP" KILL
cq cbvd1 outfb "$F1" "$F1"
DETAIL=$out check "fallback: cbvd1 right while Redis is down" cq_right 2
expect_text "fallback: cbvd1 stored it in the LMDB fallback, then a hit there" "$(vlines "$F1" "${CLOG[cbvd1]}")" \
	'^pass/accepted miss$'$'\n''^pass/accepted hit$'
if ((EXIM_OK)); then
	xs A outfb "$F1"
	DETAIL=$out check "fallback: Exim A right" xs_right "$F1"
	expect_text "fallback: Exim A (another process on host A) hits the same fallback" "$(vlines "$F1" "$LOGA")" '^pass/accepted hit$'
fi
check "fallback: one RCPT for $F1" test "$(rcpts "$F1")" -eq 1
check "fallback: the LMDB file is there" test -s "$W/fb/cbv"
redis_start "$RP" || bad "fallback: Redis restarted"
if ((LIVE)); then
	printf 'QUIT\r\n' >&7
	exec 7>&-
	LIVE=0
fi

# ================= 4. AUTH =================

# (cbvd1 only: with the fakes below cbvd2 would hold more than 8 handles)
A1=auth1-$ID@count.test A2=auth2-$ID@count.test A3=auth3-$ID@count.test
n0=$(grep -c . "${CLOG[cbvd1]}")
cq cbvd1 authwrong "$A1" "$A1"
DETAIL=$out check "auth, wrong password: cbvd1 verdicts right" cq_right 2
l=$(tail -n +$((n0 + 1)) "${CLOG[cbvd1]}")
expect_text "auth, wrong password: a clear log line" "$l" \
	"cache redis://127\\.0\\.0\\.1:$RPA: AUTH refused \\((WRONGPASS|ERR invalid password).*\\); retrying with backoff; verifying without it"
check "auth, wrong password: uncached (two RCPTs)" test "$(rcpts "$A1")" -eq 2
cq cbvd1 authloose "$A2"
DETAIL=$out check "auth, file readable by group: cbvd1 verdict right" cq_right 1
expect_text "auth, file readable by group: refused with a clear line" "$(cat "${CLOG[cbvd1]}")" \
	"cache redis://127\\.0\\.0\\.1:$RPA: cache_password_file $W/auth/loose: mode 0640 lets group or others at the secret; refused \\(chmod 600\\)"
cq cbvd1 authright "$A3" "$A3"
DETAIL=$out check "auth, right password: cbvd1 right" cq_right 2
expect_text "auth, right password: a miss then a hit" "$(vlines "$A3" "${CLOG[cbvd1]}")" \
	'^pass/accepted miss$'$'\n''^pass/accepted hit$'
check "auth, right password: one RCPT" test "$(rcpts "$A3")" -eq 1
check "auth, right password: the record is in Redis" \
	test "$(redis-cli -h 127.0.0.1 -p "$RPA" -a "$SECRET" --no-auth-warning --scan --pattern 'authright:A:*' | wc -l)" -ge 1
if ((EXIM_OK)); then
	A4=auth4-$ID@count.test
	mark
	xs A authwrong "$A4"
	DETAIL=$out check "auth, wrong password, Exim: 250" xs_right "$A4"
	xs A authloose "$A4"
	DETAIL=$out check "auth, loose file, Exim: 250" xs_right "$A4"
	l=$(newlog)
	expect_text "auth, Exim: both refusals in mainlog, uncached" "$l" \
		"AUTH refused .*verifying without it" "cache_password_file $W/auth/loose: mode 0640 .*refused" \
		"cbv: <$A4> .* cache=off"
	check "auth, Exim: two RCPTs for $A4" test "$(rcpts "$A4")" -eq 2
	xs B authright "$A3"
	expect_text "auth, right password, Exim B: a hit on cbvd1's record" "$(vlines "$A3" "$LOGB")" '^pass/accepted hit$'
	check "auth, right password: still one RCPT" test "$(rcpts "$A3")" -eq 1
	cfg=$("$CBV" check-config -c "$TA/cbv.conf" 2>&1)
else
	cfg=$("$CBV" check-config -c "$W/cbvd1.conf" 2>&1)
fi
expect_text "check-config shows the password file's path" "$cfg" "cache_password_file = \"$W/auth/right\""
st=$("$CBV" cache -c "$W/cbvd1.conf" -p authright stats 2>&1)
expect_text "cbv cache stats through AUTH" "$st" '^records +[1-9][0-9]*: address [1-9]' '^redis +[0-9.]+ [KMG]?i?B used_memory'
cfg+=$'\n'$st
v=$("$CBV" verify -v -c "$W/cbvd1.conf" -p authloose "auth6-$ID@count.test" 2>&1)
expect_text "cbv verify: the loose file refused on stderr, verdict pass" "$v" \
	"mode 0640 lets group or others at the secret" "^auth6-$ID@count\\.test pass accepted"
leak=$( { ALL_LOGS | xargs cat 2>/dev/null; echo "$cfg"; echo "$v"; } | grep -cF "$SECRET")
check "the secret appears in no log and not in check-config output" test "$leak" -eq 0

# ================= 5. bad input =================

# A fake Redis answering garbage, integers, a huge bulk string, errors, at
# once (cbvd2: these fail the connection's PING, so a retry fails the same
# way and logs nothing more), or after a +PONG (cbvd3, started for them:
# cbvd2 would hold more than 8 handles; each retry then connects, logs
# "reachable again", and fails anew).
cbvd_up cbvd3 cbvd3.fleet.test
for m in "${MODES[@]}"; do
	G=bad-$m-$ID@count.test U=unknown-bad-$m-$ID@count.test
	c=cbvd2
	[[ $m == pong_* ]] && c=cbvd3
	cq "$c" "$m" "$G" "$U" "$G"
	DETAIL=$out check "fake Redis ($m): $c verdicts right" cq_right 3
	check "fake Redis ($m): $c alive" alive "$c"
	n=$(vlines "$G" "${CLOG[$c]}" | grep -c '^pass/accepted off$')
	check "fake Redis ($m): verified uncached" test "$n" -eq 2
	n=$(grep -cE "cache redis://127\\.0\\.0\\.1:${FPORT[$m]}: .*verifying without it" "${CLOG[$c]}")
	if [[ $c == cbvd2 ]]; then
		DETAIL=$(cat "${CLOG[$c]}") check "fake Redis ($m): $c logged one outage line" test "$n" -eq 1
	else
		DETAIL=$(cat "${CLOG[$c]}") check "fake Redis ($m): $c logged the outage" test "$n" -ge 1
	fi
	if ((EXIM_OK)); then
		mark
		xs A "$m" "$G" "$U"
		DETAIL=$out check "fake Redis ($m): Exim answers 250, 550 and ends the session" \
			eval 'xs_right "$G" "$U" && grep -q "^221 " <<<"$out"'
		n=$(newlog | grep -cE "cache redis://127\\.0\\.0\\.1:${FPORT[$m]}: .*verifying without it")
		DETAIL=$(newlog) check "fake Redis ($m): Exim logged the outage" test "$n" -ge 1
	fi
done

# Keys of the real Redis holding what no verifier wrote: the record is
# made by a verification, then overwritten with redis-cli before each
# further verification (cbvd1, cbvd2, Exim B).
cat >"$W/recver.py" <<'PY'
# recver.py IN OUT VERSION: the record in IN with its format version byte
# set to VERSION and its FNV-1a sum made right again (cbv_cache_rec.h).
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
b = b[:-1]                           # redis-cli --raw adds a newline
b[2] = int(sys.argv[3])
h = 0x811c9dc5
for c in b[:-4]:
    h = ((h ^ c) * 0x01000193) & 0xffffffff
b[-4:] = struct.pack("<I", h)
open(sys.argv[2], "wb").write(bytes(b))
PY
akeys() { rcli --scan --pattern 'bad:A:count.test:*' | sort; }
# badcase N WHAT LOGRE CMD...: CMD (with $KEY the address key and $REC a
# good record saved from it) before each verification; LOGRE: the line a
# new process logs about it ("" = none).
badcase() {
	local nb=$1 what=$2 logre=$3 a=bad$1-$ID@count.test before key n v
	shift 3
	before=$(akeys)
	cq cbvd1 bad "$a"
	key=$(comm -13 <(echo "$before") <(akeys))
	if [[ -z $key || $key == *$'\n'* ]]; then
		bad "$what: one new record" "$key"
		return
	fi
	rcli --raw GET "$key" >"$W/rec.$nb"
	n=1
	for v in cbvd1 cbvd2 B; do
		KEY=$key REC=$W/rec.$nb eval "$*"
		if [[ $v == B ]]; then
			((EXIM_OK)) || continue
			T=$TB mark
			xs B bad "$a"
			DETAIL=$out check "$what: Exim B right" xs_right "$a"
			if [[ -n $logre ]]; then
				expect_text "$what: Exim B logged it" "$(T=$TB newlog)" "cache redis://127\\.0\\.0\\.1:$RP: $logre; ignored"
			fi
		else
			cq "$v" bad "$a"
			DETAIL=$out check "$what: $v right" cq_right 1
		fi
		n=$((n + 1))
	done
	check "$what: cbvd1 and cbvd2 alive" eval 'alive cbvd1 && alive cbvd2'
	check "$what: each verification called out (the bad value answered nothing)" test "$(rcpts "$a")" -eq "$n"
}
badcase 1 "a list where the record was" '' 'rcli DEL "$KEY" >/dev/null; rcli RPUSH "$KEY" x y >/dev/null'
badcase 2 "a record of format version 2" "a record of another format version" \
	'$PY "$W/recver.py" "$REC" "$REC.v2" 2; rcli -x SET "$KEY" <"$REC.v2" >/dev/null'
expect_text "format version 2: cbvd1 logged it (once a process)" "$(cat "${CLOG[cbvd1]}")" \
	"cache redis://127\\.0\\.0\\.1:$RP: a record of another format version; ignored"
badcase 3 "a damaged record (cut short)" "a damaged record" \
	'head -c 200 "$REC" | rcli -x SET "$KEY" >/dev/null'
badcase 4 "a value of 200 kB" "a value larger than any record" \
	'head -c 200000 /dev/zero | tr "\0" x | rcli -x SET "$KEY" >/dev/null'
badcase 5 "a flight lease of the wrong type" '' \
	'rcli DEL "$KEY" >/dev/null; rcli HSET "${KEY/:A:/:F:}" a b >/dev/null'
badcase 6 "a flight lease without expiry" '' \
	'rcli DEL "$KEY" >/dev/null; rcli SET "${KEY/:A:/:F:}" 12345 >/dev/null'
rcli SET bad:R:count.test junk >/dev/null
rcli SET bad:C:count.test junk >/dev/null
rcli SET bad:H:127.0.0.65 junk >/dev/null
cq cbvd1 badrate "badrate-$ID@count.test" "unknown-badrate-$ID@count.test"
DETAIL=$out check "rate and concurrency keys of the wrong type: cbvd1 right" cq_right 2
if ((EXIM_OK)); then
	rcli SET bad:R:count.test junk >/dev/null
	xs A badrate "badrate2-$ID@count.test"
	DETAIL=$out check "rate and concurrency keys of the wrong type: Exim right" xs_right "badrate2-$ID@count.test"
fi
check "after all the bad input: cbvd1, cbvd2 and cbvd3 alive" eval 'alive cbvd1 && alive cbvd2 && alive cbvd3'
n=$(ALL_LOGS | xargs cat 2>/dev/null | grep -E 'cbv: <[^>]*> ' | grep -c ' error/')
check "no verification anywhere ended in error" test "$n" -eq 0
if ((EXIM_OK)); then
	p=$(cat "$TA/log/paniclog" "$TB/log/paniclog" 2>/dev/null | grep -v 'lost privilege')
	DETAIL=$p check "no paniclog entry on either Exim host" test -z "$p"
fi

# ---- stop: cbvd exits cleanly ----
for c in cbvd1 cbvd2 cbvd3; do
	kill -TERM "${CPID[$c]}"
	wait "${CPID[$c]}"
	rc=$?
	check "$c: SIGTERM, exit 0" test "$rc" -eq 0
done
summary
