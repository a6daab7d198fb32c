#!/bin/bash
# cbvd, the callout server, against the loopback rig: a client speaking
# exactly as mailfromd's callout.mfl does (greeting, SID, SET, VRFY, RUN,
# progress lines, final OK, QUIT), malformed requests, the tarpit bound,
# a client leaving mid-RUN, max_clients, a 200-client load test (no fd
# growth, bounded RSS) and SIGTERM.  Leaves nothing running.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
B=${B:-build}
CBVD="$B/cbvd"
BENCH="$B/bench/cbvd_bench"

need_rig
need_built "$CBVD" "$BENCH"
TMP=$(mktemp -d)
chmod 755 "$TMP"
mkdir "$TMP/run"
mkdir "$TMP/cache"
cbvd_dirs "$TMP/run" "$TMP/cache"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(free_port)
SOCK="$TMP/run/cbvd.sock"
{
	# session_reuse = no: most checks here compare each job's lines with a
	# fresh session's; profile "reuse" checks cbvd with reuse on.
	rig_profile default 'helo = "verifier.test"' 'timeout = 10s' 'session_reuse = no'
	rig_profile reuse 'helo = "verifier.test"' 'timeout = 10s'
	rig_profile reuseidle 'helo = "idle.verifier.test"' 'timeout = 10s' 'session_idle = 1s'
	rig_profile strict 'starttls = require' 'timeout = 5s'
	rig_profile short 'timeout = 2s'
	rig_profile cached "cache = \"$TMP/cache/cbv\"" 'timeout = 10s' 'session_reuse = no'
	cat <<CONF
server {
  listen = [ "unix://$SOCK" "inet://127.0.0.1:$PORT" ]
  max_clients = 300
  max_inflight = 1024
}
CONF
} >"$TMP/cbv.conf"

# start_cbvd LOG ARGS...: cbvd_start, and CPID (stopped by cleanup)
start_cbvd() {
	local rc
	cbvd_start "$CBVD" "$@"
	rc=$?
	CPID=$CBVD_PID
	PIDS+=("$CPID")
	return $rc
}

if start_cbvd "$TMP/cbvd.log" -c "$TMP/cbv.conf"; then ok "cbvd starts"; else
	bad "cbvd starts" "$(cat "$TMP/cbvd.log")"; summary; exit 1
fi
[ -S "$SOCK" ] && ok "UNIX socket created" || bad "UNIX socket created"
if [ "$(id -u)" = 0 ]; then
	u=$(ps -o user= -p "$CPID" | tr -d ' ')
	# an empty user (no ps, or cbvd gone) must fail too
	[ -n "$u" ] && [ "$u" != root ] && ok "dropped root (running as $u)" || bad "dropped root" "user '$u'"
fi

# The protocol client: python, sending what callout.mfl sends, one command
# then one answer; prints the transcript with timings (S: / C:).
cat > "$TMP/client.py" <<'PY'
import socket, sys, time
url = sys.argv[1]
if url.startswith("unix://"):
    s = socket.socket(socket.AF_UNIX); s.connect(url[7:])
else:
    h, p = url[7:].rsplit(":", 1); s = socket.create_connection((h, int(p)))
s.settimeout(30)
f = s.makefile("rb")
t0 = time.time()
def rd():
    l = f.readline()
    sys.stdout.write("%.3f S: %s\n" % (time.time() - t0, l.decode("latin1").replace("\r\n", "<CRLF>").replace("\n", "<LF>")))
    sys.stdout.flush()
    return l
rd()
for cmd in sys.argv[2:]:
    if cmd == "@HOLD":
        time.sleep(60); sys.exit(0)
    nowait = cmd.endswith("!")
    if nowait:
        cmd = cmd[:-1]
    if cmd.startswith("@RAW:"):
        data = cmd[5:].encode("latin1").decode("unicode_escape").encode("latin1")
    else:
        data = cmd.encode("latin1") + b"\r\n"
    sys.stdout.write("%.3f C: %s\n" % (time.time() - t0, cmd)); sys.stdout.flush()
    s.sendall(data)
    if nowait:
        pass
    elif cmd == "RUN" or cmd.upper().startswith("GET "):
        while True:
            l = rd()
            if not l.startswith(b"*"):
                break
    else:
        rd()
PY
client() { timeout 60 python3 "$TMP/client.py" "$@" 2>&1; }
TCP="inet://127.0.0.1:$PORT"
UNIX="unix://$SOCK"

for url in "$TCP" "$UNIX"; do
	kind=${url%%:*}
	out=$(client "$url" 'SID local:' 'SET TRANSCRIPT="OFF"' 'SET STARTTLS="ondemand"' \
		'VRFY "alice@exim.test"' RUN QUIT)
	expect_text "$kind: greeting" "$out" '^0\.[0-9]+ S: OK mailfromd callout server ready \(cbvd [0-9][0-9.]* XCBV\)<CRLF>$'
	expect_text "$kind: SID and SET answered OK" "$out" 'C: SID local:' 'S: OK<CRLF>$'
	expect_text "$kind: VRFY gets an id" "$out" 'S: OK 0000000000<CRLF>$'
	expect_text "$kind: progress lines as calloutd writes them" "$out" \
		'S: \* 0000000000 INIT mx\.exim\.test<CRLF>$' \
		'S: \* 0000000000 GRTNG 220 mx\.exim\.test ESMTP' \
		'S: \* 0000000000 HELO 250-mx\.exim\.test Hello verifier\.test' \
		'S: \* 0000000000 SENT RCPT TO:<alice@exim\.test><CRLF>$' \
		'S: \* 0000000000 RECV 250 '
	expect_text "$kind: final success" "$out" 'S: OK 0000000000=success<CRLF>$'
	expect_text "$kind: QUIT" "$out" 'S: OK bye<CRLF>$'
	if grep -q 'SENT QUIT' <<<"$out"; then bad "$kind: QUIT to the MX not reported"; else ok "$kind: QUIT to the MX not reported"; fi
	last_sent=$(grep -o 'SENT .*<CRLF>' <<<"$out" | tail -1)
	[ "$last_sent" = 'SENT RCPT TO:<alice@exim.test><CRLF>' ] && ok "$kind: last SENT is the RCPT (last_poll_sent)" \
		|| bad "$kind: last SENT is the RCPT" "$last_sent"
done

# mailfromd's last_poll values (issue 11.10): "SENT nothing" / "RECV nothing"
# as calloutd writes them, the refusing greeting as RECV, and SENT/RECV a
# true pair (issue 11.8) even when MAIL and RCPT were pipelined.
out=$(client "$TCP" 'SET PROFILE="short"' 'VRFY "x@tarpit.test"' RUN QUIT)
expect_text "tarpit: SENT nothing, RECV nothing" "$out" \
	'S: \* 0000000000 SENT nothing<CRLF>$' 'S: \* 0000000000 RECV nothing<CRLF>$' \
	'S: OK 0000000000=temp_failure<CRLF>$'
out=$(client "$TCP" 'VRFY "x@greet554.test"' RUN QUIT)
expect_text "554 greeting: SENT nothing, RECV the greeting" "$out" \
	'S: \* 0000000000 SENT nothing<CRLF>$' 'S: \* 0000000000 RECV 554 5\.3\.2 No service here<CRLF>$'
last=$(grep -Eo '(SENT|RECV) .*<CRLF>' <<<"$out" | tail -2 | tr '\n' '|')
[ "$last" = 'SENT nothing<CRLF>|RECV 554 5.3.2 No service here<CRLF>|' ] && ok "554 greeting: last pair" \
	|| bad "554 greeting: last pair" "$last"
out=$(client "$TCP" 'VRFY "x@nullsender.test"' RUN QUIT)
last=$(grep -Eo '(SENT|RECV) .*<CRLF>' <<<"$out" | tail -2 | tr '\n' '|')
[ "$last" = 'SENT MAIL FROM:<><CRLF>|RECV 550 5.7.1 Null sender refused<CRLF>|' ] \
	&& ok "pipelined MAIL 550: last SENT is the MAIL, not the RCPT" \
	|| bad "pipelined MAIL 550: last SENT is the MAIL" "$last"
if grep -q 'SENT RCPT' <<<"$out"; then bad "pipelined MAIL 550: unanswered RCPT not reported"; else
	ok "pipelined MAIL 550: unanswered RCPT not reported"; fi
# The XCBV extension (docs/callout-protocol.md): our verdict, reason, code.
expect_text "XCBV lines carry cbv's verdict" "$out" \
	'S: \* 0000000000 XCBV status error<CRLF>$' 'S: \* 0000000000 XCBV reason sender_refused<CRLF>$' \
	'S: \* 0000000000 XCBV code 550<CRLF>$' 'S: \* 0000000000 XCBV ecode 5\.7\.1<CRLF>$' \
	'S: \* 0000000000 XCBV message 550 5\.7\.1 Null sender refused<CRLF>$'
# A client cannot weaken a profile's starttls = require (issue 11.7).
out=$(client "$TCP" 'SET PROFILE="strict"' 'SET STARTTLS="always"' 'VRFY "x@fast.test"' RUN QUIT)
expect_text "profile require survives SET STARTTLS=always" "$out" \
	'S: \* 0000000000 XCBV reason tls_required<CRLF>$' 'S: OK 0000000000=failure<CRLF>$'
out=$(client "$TCP" 'SET STARTTLS="require"' 'VRFY "x@fast.test"' RUN QUIT)
expect_text "SET STARTTLS=require is honoured" "$out" \
	'S: \* 0000000000 XCBV reason tls_required<CRLF>$' 'S: OK 0000000000=failure<CRLF>$'

# Verdicts, one RUN for several VRFYs (ids in order, one final line).
out=$(client "$TCP" 'SID 127.0.0.1:q1' 'VRFY "nobody@exim.test"' 'VRFY "grey@exim.test"' \
	'VRFY "x@policy.test"' 'VRFY "x@nowhere.test"' 'VRFY "x@dead.test"' 'VRFY "x@fast.test"' \
	'VRFY "not an address"' RUN QUIT)
expect_text "verdicts in one RUN" "$out" \
	'S: OK 0000000000=not_found 0000000001=temp_failure 0000000002=failure 0000000003=not_found 0000000004=temp_failure 0000000005=success 0000000006=not_found<CRLF>$'
expect_text "550 5.1.1 reported in RECV" "$out" 'S: \* 0000000000 RECV 550 5\.1\.1 '
expect_text "greylisting reported" "$out" 'S: \* 0000000001 RECV 451 4\.7\.1 '

# The same with exactly callout.mfl's bytes, from bash over /dev/tcp.
mfl_session() {
	local line reply final="" host="" sent="" recv=""
	exec 5<>"/dev/tcp/127.0.0.1/$PORT" || return 1
	IFS= read -r -t 10 reply <&5 || return 1
	[[ $reply == OK* ]] || return 1
	for line in 'SID local:' 'SET TRANSCRIPT="OFF"' 'SET STARTTLS="ondemand"' 'SET EHLO="verifier.test"' \
		'SET MAILFROM="probe@exim.test"'; do
		printf '%s\r\n' "$line" >&5
		IFS= read -r -t 10 reply <&5 || return 1
		[[ $reply == OK* ]] || { echo "setup: $reply"; return 1; }
	done
	printf 'VRFY "%s"\r\n' "$1" >&5
	IFS= read -r -t 10 reply <&5
	[[ $reply == OK* ]] || { echo "vrfy: $reply"; return 1; }
	printf 'RUN\r\n' >&5
	while IFS= read -r -t 20 reply <&5; do
		reply=${reply%$'\r'}
		if [[ $reply =~ ^\*\ ([0-9]+)\ ([A-Z]+)\ (.*)$ ]]; then
			case ${BASH_REMATCH[2]} in
			INIT) host=${BASH_REMATCH[3]} ;; SENT) sent=${BASH_REMATCH[3]} ;; RECV) recv=${BASH_REMATCH[3]} ;;
			esac
			continue
		fi
		final=$reply
		break
	done
	printf 'QUIT\r\n' >&5
	IFS= read -r -t 10 reply <&5
	exec 5>&-
	echo "final=$final host=$host sent=$sent recv=$recv bye=${reply%$'\r'}"
}
out=$(mfl_session nobody@exim.test)
expect_text "callout.mfl byte-exact session (bash /dev/tcp)" "$out" \
	'^final=OK 0000000000=not_found host=mx\.exim\.test sent=RCPT TO:<nobody@exim\.test> recv=550 5\.1\.1 .* bye=OK bye$'

# Malformed requests get NO and the connection survives.
long=$(head -c 5000 /dev/zero | tr '\0' 'x')
out=$(client "$TCP" 'BLAH' '' 'SET FOO="x"' 'SET EHLO' 'SET STARTTLS="bogus"' 'SET EHLO="bad host!"' \
	'VRFY' 'VRFY "a@b" MODE=hostonly' 'VRFY "a@b" MODE=mxonly' 'VRFY "a@b.test" MODE=mxonly HOST=c.test' 'TIMEOUT 1 2' \
	"VRFY \"$long\"" $'@RAW:VRFY "a\\x01b@exim.test"\r\n' 'VRFY "alice@exim.test"' RUN QUIT)
expect_text "malformed requests: NO, connection survives" "$out" \
	'S: NO unknown command<CRLF>$' 'S: NO empty command<CRLF>$' 'S: NO bad assignment FOO=x<CRLF>$' \
	'S: NO bad assignment EHLO<CRLF>$' 'S: NO unrecognized starttls mode: bogus<CRLF>$' \
	'S: NO bad assignment EHLO=bad host!<CRLF>$' 'S: NO invalid arguments<CRLF>$' \
	'S: NO mode requires host<CRLF>$' \
	"S: NO mode not supported: mxonly with a HOST other than the address's domain<CRLF>\$" \
	'S: NO line too long<CRLF>$' 'S: NO bad input<CRLF>$' \
	'S: OK 0000000000=success<CRLF>$' 'S: OK bye<CRLF>$'

n=$(grep -c 'S: NO mode requires host<CRLF>$' <<<"$out")
[ "$n" -eq 2 ] && ok "MODE=hostonly and MODE=mxonly without HOST: NO mode requires host (as calloutd)" \
	|| bad "MODE without HOST" "$n times: $out"

# VRFY MODE= and HOST= against the rig, one RUN: the hosts tried (INIT
# lines, in order, per job) and the words.
out=$(client "$TCP" 'VRFY "y@nowhere.test" MODE=hostonly HOST=127.0.0.30' \
	'VRFY "x@fast.test" MODE=hostonly HOST=mx.exim.test' \
	'VRFY "alice@exim.test" MODE=hostfirst HOST=127.0.0.30' \
	'VRFY "bob@exim.test" MODE=hostfirst HOST=127.0.0.50' \
	'VRFY "x@dead.test" MODE=mxfirst HOST=127.0.0.30' \
	'VRFY "postmaster@exim.test" HOST=127.0.0.30' \
	'VRFY "alice@exim.test" mode=MXONLY host=EXIM.TEST.' \
	'VRFY "a@exim.test" MODE=hostonly HOST=-bad-' RUN QUIT)
inits() { grep -o "S: \* $1 INIT [^<]*" <<<"$out" | awk '{print $5}' | tr '\n' ' '; }
expect_text "host modes: words" "$out" \
	'S: OK 0000000000=success 0000000001=failure 0000000002=success 0000000003=success 0000000004=success 0000000005=success 0000000006=success 0000000007=failure<CRLF>$'
want=("127.0.0.30 " "mx.exim.test " "127.0.0.30 " "127.0.0.50 mx.exim.test " "a.dead.test b.dead.test 127.0.0.30 "
	"mx.exim.test " "mx.exim.test " "")
what=("hostonly: the host only, no MX lookup (NXDOMAIN domain)" "hostonly: a host name is resolved (550 5.7.1 relaying: failure)"
	"hostfirst: the host first" "hostfirst: a dead host, then the MX" "mxfirst: the dead MX hosts, then the host"
	"no MODE is mxfirst: the MX answers, the host is not needed" "mxonly with HOST = the address's domain (any case, trailing dot)"
	"hostonly with a bad host name: failure, nothing tried")
for i in "${!want[@]}"; do
	got=$(inits "000000000$i")
	[ "$got" = "${want[$i]}" ] && ok "host modes: ${what[$i]}" || bad "host modes: ${what[$i]}" "INIT: '$got', want '${want[$i]}'"$'\n'"$out"
done
expect_text "hostonly: RECV of the named host" "$out" 'S: \* 0000000001 RECV 550 5\.7\.1 '

# GET, TIMEOUT, PROFILE
out=$(client "$UNIX" 'SET EHLO="e.test"' 'GET EHLO STARTTLS TRANSCRIPT' 'TIMEOUT 5 5 5 5 5 5 5' \
	'SET PROFILE="nosuch"' 'SET PROFILE="short"' 'GET profile' QUIT)
expect_text "GET, TIMEOUT, SET PROFILE" "$out" 'S: \* EHLO=e\.test<CRLF>$' 'S: \* STARTTLS=always<CRLF>$' \
	'S: \* TRANSCRIPT=OFF<CRLF>$' 'S: OK timeouts set<CRLF>$' 'S: NO bad assignment PROFILE=nosuch<CRLF>$' \
	'S: \* profile=short<CRLF>$'

# The tarpit: ends temp_failure under a 2 s timeout, and the INIT progress
# line comes before the verdict.  How close to 2 s it ends is measured by
# bench/cbvd_bench.sh, not asserted here (no timing assertions in tests).
out=$(client "$TCP" 'TIMEOUT 2 2 2 2 2 2 2' 'VRFY "x@tarpit.test"' RUN QUIT)
t_run=$(grep -E 'C: RUN' <<<"$out" | cut -d' ' -f1)
t_end=$(grep -E 'S: OK 0000000000=' <<<"$out" | cut -d' ' -f1)
if [ -n "$t_end" ] && grep -q 'S: OK 0000000000=temp_failure' <<<"$out"; then
	ok "tarpit: temp_failure under the 2 s timeout (took $(python3 -c "print('%.3f' % ($t_end-$t_run))") s)"
else
	bad "tarpit: temp_failure under the 2 s timeout" "$out"
fi
if grep -nE 'S: \* 0000000000 INIT|S: OK 0000000000=' <<<"$out" | head -1 | grep -q INIT; then
	ok "INIT streamed before the verdict"
else
	bad "INIT streamed before the verdict" "$out"
fi

fds() { ls /proc/"$CPID"/fd | wc -l; }
rss() { awk '/VmRSS/ {print $2}' /proc/"$CPID"/status; }
conns_to_tarpit() { ss -Htn state established dst "127.0.0.20" 2>/dev/null | wc -l; }

# A client leaving mid-RUN: its verification is cancelled (connection to
# the tarpit closed), nothing leaks, others unaffected.
# until_ok CMD...: polls CMD (bounded: 10 s) until it succeeds.
until_ok() { local i; for ((i = 0; i < 100; i++)); do "$@" && return 0; sleep 0.1; done; return 1; }
fd0=$(fds)
timeout 60 python3 "$TMP/client.py" "$TCP" 'VRFY "x@tarpit.test"' 'RUN!' '@HOLD' >/dev/null 2>&1 &
cpid=$!
tarpit_busy() { [ "$(conns_to_tarpit)" -ge 1 ]; }
tarpit_idle() { [ "$(conns_to_tarpit)" -eq 0 ]; }
fds_back() { [ "$(fds)" -le "$fd0" ]; }
until_ok tarpit_busy
mid=$(conns_to_tarpit)
kill "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
until_ok tarpit_idle
until_ok fds_back
after=$(conns_to_tarpit)
fd1=$(fds)
if [ "$mid" -ge 1 ] && [ "$after" -eq 0 ] && [ "$fd1" -le "$fd0" ]; then
	ok "disconnect mid-RUN cancels (tarpit conns $mid -> $after, fds $fd0 -> $fd1)"
else
	bad "disconnect mid-RUN cancels" "tarpit conns $mid -> $after, fds $fd0 -> $fd1"
fi

# A client leaving before the verdict, with a cache: cbvd finishes the
# verification in the background and stores it; the retry is a cache hit
# (slowcount.test greets 2 s late and logs each RCPT it gets).
bg="bg$$@slowcount.test"
rcpts_bg() { grep -c "^127\.0\.0\.68 <$bg>\$" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
bg_stored() { [ "$(rcpts_bg)" = 1 ] && grep -q "<$bg> .*finished in the background" "$TMP/cbvd.log"; }
client "$TCP" 'SET PROFILE="cached"' "VRFY \"$bg\"" 'RUN!' >/dev/null
if until_ok bg_stored; then ok "client gone: the verification finishes in the background"; else
	bad "client gone: the verification finishes in the background" "rcpts=$(rcpts_bg) $(grep -F "$bg" "$TMP/cbvd.log")"; fi
out=$(client "$TCP" 'SET PROFILE="cached"' "VRFY \"$bg\"" RUN QUIT)
expect_text "client gone: the retry is answered from the cache" "$out" 'S: OK 0000000000=success<CRLF>$'
if [ "$(rcpts_bg)" = 1 ] && grep -q "<$bg> .*cache=hit" "$TMP/cbvd.log"; then
	ok "client gone: the MX saw one RCPT, the log says cache=hit"
else
	bad "client gone: the MX saw one RCPT, the log says cache=hit" "rcpts=$(rcpts_bg) $(grep -F "$bg" "$TMP/cbvd.log")"
fi

# Several VRFYs of one RUN share SMTP sessions (issue 9.3): same domain
# (after the map), same HOST, MODE, EHLO and MAIL FROM -> one connection,
# one MAIL FROM, one RCPT each; every job's progress, XCBV and final word
# as five separate RUNs give them.  The counting servers (count.test
# 127.0.0.65; slowcount.test 127.0.0.68) log each RCPT to rcpt.log, and
# fakesmtp (-v) each connection and command to fakesmtp.log.
FLOG="$CBV_RIG_DIR/fakesmtp.log"
flog_mark() { wc -l <"$FLOG" 2>/dev/null || echo 0; }
# smtp_count MARK IP WHAT: connections ("connect") or MAIL FROMs ("mail") at IP since MARK
smtp_count() {
	tail -n +"$(($1 + 1))" "$FLOG" 2>/dev/null | awk -v ip="$2" -v what="$3" '
		$3 == "connect" && index($0, " to " ip ":") { id[$2] = 1; c++ }
		$3 == "<" && $4 == "MAIL" && ($2 in id) { m++ }
		END { print (what == "connect" ? c + 0 : m + 0) }'
}
# same_jobs A B: the per-ID lines (progress, XCBV) and final words of two
# transcripts are equal, times, dates and elapsed masked; prints the difference
cat >"$TMP/samejobs.py" <<'PY'
import re, sys
def jobs(path):
    lines, words = {}, {}
    for l in open(path, encoding="latin1"):
        m = re.match(r"[0-9.]+ S: (.*)<CRLF>$", l.rstrip("\n"))
        if not m:
            continue
        t = m.group(1)
        p = re.match(r"\* (\d{10}) (.*)$", t)
        if p:
            v = re.sub(r"\d\d:\d\d:\d\d|[+-]\d{4}\b|\b\d{1,2} \w{3} \d{4}\b|\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b", "T", p.group(2))
            v = re.sub(r"^XCBV elapsed \d+$", "XCBV elapsed N", v)
            # a TLS session kept from an earlier connection: the process's state, not the job's
            v = re.sub(r"^(XCBV tls .*):resumed$", r"\1", v)
            lines.setdefault(p.group(1), []).append(v)
        elif t.startswith("OK ") and "=" in t:
            for w in t[3:].split():
                i, _, word = w.partition("=")
                words[i] = word
    return lines, words
a, b = jobs(sys.argv[1]), jobs(sys.argv[2])
bad = False
for i in sorted(set(a[0]) | set(b[0]) | set(a[1]) | set(b[1])):
    if a[0].get(i) != b[0].get(i) or a[1].get(i) != b[1].get(i):
        bad = True
        print("job %s: %s %s\n  vs %s %s" % (i, a[1].get(i), a[0].get(i), b[1].get(i), b[0].get(i)))
print("jobs %d, words %s" % (len(a[0]), " ".join(a[1].get(i, "-") for i in sorted(a[1]))))
sys.exit(1 if bad or not a[1] else 0)
PY
same_jobs() { python3 "$TMP/samejobs.py" "$1" "$2"; }
# runs ADDR...: "VRFY" for each, then one RUN; apart ADDR...: one RUN each
# (SETS: SET lines sent first; VSUF: parameters after each VRFY's address)
SETS=() VSUF=
runs_one() { local a v=(); for a in "$@"; do v+=("VRFY \"$a\"$VSUF"); done; client "$TCP" "${SETS[@]}" "${v[@]}" RUN QUIT; }
runs_apart() { local a v=(); for a in "$@"; do v+=("VRFY \"$a\"$VSUF" RUN); done; client "$TCP" "${SETS[@]}" "${v[@]}" QUIT; }

FIVE=(a1@count.test a2@count.test unknown3@count.test a4@COUNT.test a5@count.test)
m=$(flog_mark)
runs_one "${FIVE[@]}" >"$TMP/one.out"
c1=$(smtp_count "$m" 127.0.0.65 connect) m1=$(smtp_count "$m" 127.0.0.65 mail)
m=$(flog_mark)
runs_apart "${FIVE[@]}" >"$TMP/apart.out"
c5=$(smtp_count "$m" 127.0.0.65 connect) m5=$(smtp_count "$m" 127.0.0.65 mail)
if [ "${CBV_RIG_QUIET:-0}" = 1 ]; then
	ok "5 VRFYs, one RUN: one connection # skip: fakesmtp without -v (CBV_RIG_QUIET=1)"
else
	DETAIL="one RUN: $c1 connections, $m1 MAIL; apart: $c5, $m5" check \
		"5 VRFYs at one domain, one RUN: one connection and one MAIL FROM (5 RUNs: 5 and 5)" \
		eval '[ "$c1" = 1 ] && [ "$m1" = 1 ] && [ "$c5" = 5 ] && [ "$m5" = 5 ]'
fi
out=$(same_jobs "$TMP/one.out" "$TMP/apart.out")
DETAIL="$out" check "5 VRFYs, one RUN: each job's lines and word as 5 RUNs give ($out)" \
	eval '[[ $out == "jobs 5, words success success not_found success success" ]]'

# Session reuse in cbvd: the second RUN at count.test sends only RCPT TO on
# the session the first one parked.
m=$(flog_mark)
out=$(client "$TCP" 'SET PROFILE="reuse"' 'VRFY "r1@count.test"' RUN 'VRFY "r2@count.test"' RUN QUIT)
cr=$(smtp_count "$m" 127.0.0.65 connect) mr=$(smtp_count "$m" 127.0.0.65 mail)
if [ "${CBV_RIG_QUIET:-0}" = 1 ]; then
	ok "session reuse: two RUNs, one connection # skip: fakesmtp without -v (CBV_RIG_QUIET=1)"
else
	DETAIL="$cr connections, $mr MAIL; $out" check \
		"session reuse: two RUNs at one domain, one connection and one MAIL FROM, both success" \
		eval '[ "$cr" = 1 ] && [ "$mr" = 1 ] && [ "$(grep -c "=success" <<<"$out")" = 2 ]'
fi

# cbvd closes a parked session once session_idle has passed, with no
# verification to notice it (its loop wakes for it): QUIT at the server.
m=$(flog_mark)
out=$(client "$TCP" 'SET PROFILE="reuseidle"' 'VRFY "r3@count.test"' RUN QUIT)
quit_seen() {
	tail -n +"$((m + 1))" "$FLOG" 2>/dev/null | awk '
		$3 == "connect" && index($0, " to 127.0.0.65:") { id[$2] = 1 }
		$3 == "<" && $4 == "QUIT" && ($2 in id) { q++ }
		END { exit !(q >= 1) }'
}
if [ "${CBV_RIG_QUIET:-0}" = 1 ]; then
	ok "session reuse: idle session closed # skip: fakesmtp without -v (CBV_RIG_QUIET=1)"
else
	DETAIL="$out" check "session reuse: cbvd sends QUIT on a parked session past session_idle" \
		until_ok quit_seen
fi

# Mixed: domains, a greylisting first MX (grey.test: grey goes on to mx2
# alone), a null MX, bad syntax, a HOST, another MAIL FROM, and a cache-free
# duplicate: every job as it is alone.
MIX=(alice@grey.test a@count.test grey@grey.test x@nullmx.test "not an address" b@count.test
	bob@grey.test nobody@exim.test grey@exim.test alice@exim.test b@count.test)
m=$(flog_mark)
runs_one "${MIX[@]}" >"$TMP/one.out"
cm=$(smtp_count "$m" 127.0.0.65 connect)
runs_apart "${MIX[@]}" >"$TMP/apart.out"
out=$(same_jobs "$TMP/one.out" "$TMP/apart.out")
DETAIL="$out" check "mixed RUN: each job's lines and word as alone ($out)" \
	eval '[[ $out == "jobs 11, words success success temp_failure not_found not_found success success not_found temp_failure success success" ]]'
[ "${CBV_RIG_QUIET:-0}" = 1 ] || DETAIL="$cm" check "mixed RUN: count.test's three in one connection" test "$cm" = 1
# The same as callout.mfl sets it up: STARTTLS on demand (RCPTs after the first one at a time).
SETS=('SET STARTTLS="ondemand"' 'SET MAILFROM="<probe@exim.test>"')
m=$(flog_mark)
runs_one "${MIX[@]}" >"$TMP/one.out"
cm=$(smtp_count "$m" 127.0.0.65 connect)
runs_apart "${MIX[@]}" >"$TMP/apart.out"
SETS=()
out=$(same_jobs "$TMP/one.out" "$TMP/apart.out")
DETAIL="$out" check "mixed RUN, STARTTLS on demand: each job's lines and word as alone ($out)" \
	eval '[[ $out == "jobs 11, words success success temp_failure not_found not_found success success not_found temp_failure success success" ]]'
[ "${CBV_RIG_QUIET:-0}" = 1 ] || DETAIL="$cm" check "mixed RUN, STARTTLS on demand: count.test's three in one connection" test "$cm" = 1
ni=$(grep -c 'S: \* 0000000002 INIT' "$TMP/one.out")
DETAIL="$(grep ' 0000000002 ' "$TMP/one.out")" check "mixed RUN: the greylisted one alone tries both MX" test "$ni" = 2
m=$(flog_mark)
out=$(client "$TCP" 'VRFY "a@count.test"' 'VRFY "b@count.test" MAILFROM="<probe@exim.test>"' \
	'VRFY "c@count.test" HOST=127.0.0.65' 'VRFY "d@count.test" EHLO=other.test' 'VRFY "e@count.test"' RUN QUIT)
c=$(smtp_count "$m" 127.0.0.65 connect)
nm=$(grep -c 'SENT MAIL FROM:<probe@exim.test>' <<<"$out")
[ "${CBV_RIG_QUIET:-0}" = 1 ] && c=4
DETAIL="$c connections; $out" check "other MAIL FROM, HOST or EHLO: a session apart (a and e share: 4 connections)" \
	eval '[ "$nm" = 1 ] && [ "$c" = 4 ]'
expect_text "other MAIL FROM, HOST or EHLO: words" "$out" \
	'S: OK 0000000000=success 0000000001=success 0000000002=success 0000000003=success 0000000004=success<CRLF>$'

# MODE=hostonly: the same HOST is the same target, whatever the domains.
VSUF=' MODE=hostonly HOST=127.0.0.65'
HO=(a@count.test unknown1@exim.test b@nowhere.test c@fast.test)
m=$(flog_mark)
runs_one "${HO[@]}" >"$TMP/one.out"
c=$(smtp_count "$m" 127.0.0.65 connect)
runs_apart "${HO[@]}" >"$TMP/apart.out"
VSUF=
out=$(same_jobs "$TMP/one.out" "$TMP/apart.out")
DETAIL="$out" check "hostonly, four domains, one RUN: each job's lines and word as alone ($out)" \
	eval '[[ $out == "jobs 4, words success not_found success success" ]]'
[ "${CBV_RIG_QUIET:-0}" = 1 ] && c=1
DETAIL="$c connections" check "hostonly, four domains, one RUN: one connection to the HOST" test "$c" = 1

# More than a session takes (CBV_RCPTS_MAX 32): 40 at one domain, two sessions.
FORTY=()
for i in $(seq 40); do FORTY+=("u$i@count.test"); done
m=$(flog_mark)
out=$(runs_one "${FORTY[@]}")
c=$(smtp_count "$m" 127.0.0.65 connect)
ns=$(grep -o '=success' <<<"$out" | wc -l)
[ "${CBV_RIG_QUIET:-0}" = 1 ] && c=2
DETAIL="$c connections, $ns success" check "40 VRFYs at one domain: 2 sessions (32 + 8), 40 words" \
	eval '[ "$c" = 2 ] && [ "$ns" = 40 ]'

# A client leaving mid-group: without a cache the shared session is closed
# at once; with one, every job of the group finishes in the background and
# is stored, and each retry is a hit with its own word.
fd0=$(fds)
timeout 60 python3 "$TMP/client.py" "$TCP" 'VRFY "x1@tarpit.test"' 'VRFY "x2@tarpit.test"' \
	'VRFY "x3@tarpit.test"' 'RUN!' '@HOLD' >"$TMP/grp.out" 2>&1 &
cpid=$!
until_ok tarpit_busy
sleep 0.2
mid=$(conns_to_tarpit) midss=$(ss -Htn state established dst 127.0.0.20; cat "$TMP/grp.out")
kill "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
until_ok tarpit_idle
until_ok fds_back
after=$(conns_to_tarpit) fd1=$(fds)
DETAIL="tarpit conns $mid -> $after, fds $fd0 -> $fd1; $midss" check \
	"disconnect mid-group: one shared connection, cancelled (tarpit conns $mid -> $after)" \
	eval '[ "$mid" = 1 ] && [ "$after" = 0 ] && [ "$fd1" -le "$fd0" ]'
g1="g1$$@slowcount.test" g2="unknown$$@slowcount.test" g3="g3$$@slowcount.test"
grcpts() { grep -cE "^127\.0\.0\.68 <($g1|$g2|$g3)>\$" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
g_stored() { [ "$(grcpts)" = 3 ] && [ "$(grep -cE "<($g1|$g2|$g3)> .*finished in the background" "$TMP/cbvd.log")" = 3 ]; }
m=$(flog_mark)
client "$TCP" 'SET PROFILE="cached"' "VRFY \"$g1\"" "VRFY \"$g2\"" "VRFY \"$g3\"" 'RUN!' >/dev/null
if until_ok g_stored; then ok "client gone mid-group: all three finish in the background"; else
	bad "client gone mid-group: all three finish in the background" "rcpts=$(grcpts) $(grep -F "slowcount" "$TMP/cbvd.log" | tail -5)"; fi
c=$(smtp_count "$m" 127.0.0.68 connect)
[ "${CBV_RIG_QUIET:-0}" = 1 ] && c=1
DETAIL="$c connections" check "client gone mid-group: one connection for the three" test "$c" = 1
out=$(client "$TCP" 'SET PROFILE="cached"' "VRFY \"$g1\"" "VRFY \"$g2\"" "VRFY \"$g3\"" RUN QUIT)
expect_text "client gone mid-group: the retries are answered from the cache, each its own word" "$out" \
	'S: OK 0000000000=success 0000000001=not_found 0000000002=success<CRLF>$'
DETAIL="rcpts=$(grcpts)" check "client gone mid-group: no RCPT for the retries" test "$(grcpts)" = 3

# Load: 200 concurrent clients, mixed verdicts, twice; fds back to the
# baseline, RSS bounded and not growing between rounds.
ADDRS=(alice@exim.test nobody@exim.test grey@exim.test x@policy.test x@fast.test x@nowhere.test)
sleep 0.3
fd0=$(fds)
out1=$("$BENCH" -s "$TCP" -c 200 -n 1200 "${ADDRS[@]}" 2>&1)
rss1=$(rss)
out2=$("$BENCH" -s "$UNIX" -c 200 -n 1200 "${ADDRS[@]}" 2>&1)
rss2=$(rss)
until_ok fds_back
fd1=$(fds)
for o in "$out1" "$out2"; do
	if grep -q 'n=1200 errors=0 ' <<<"$o" &&
		grep -q 'success=400 not_found=400 failure=200 temp_failure=200 timeout=0 other=0' <<<"$o"; then
		ok "load: 200 clients, 1200 mixed verifications (${o%% lat_p95*})"
	else
		bad "load: 200 clients, 1200 mixed verifications" "$o"
	fi
done
[ "$fd1" -le "$fd0" ] && ok "load: no fd growth ($fd0 -> $fd1)" || bad "load: no fd growth" "$fd0 -> $fd1"
if ldd "$CBVD" 2>/dev/null | grep -q libasan; then
	ok "load: RSS bounded # skip under ASan (quarantine holds freed memory): ${rss1} kB -> ${rss2} kB"
elif [ "$rss2" -lt 131072 ] && [ "$rss2" -le $((rss1 + 4096)) ]; then
	ok "load: RSS bounded (${rss1} kB -> ${rss2} kB)"
else
	bad "load: RSS bounded" "${rss1} kB -> ${rss2} kB"
fi

# A flood of lines without reading the answers does not hurt others.
python3 - "$PORT" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setblocking(False)
end = time.time() + 3
chunk = b"GET EHLO\r\n" * 1000
while time.time() < end:
    try: s.send(chunk)
    except BlockingIOError: time.sleep(0.01)
    except OSError: break
s.close()
PY
flood=$!
sleep 0.5
out=$(client "$TCP" 'VRFY "x@fast.test"' RUN QUIT)
expect_text "a flooding client does not block others" "$out" 'S: OK 0000000000=success<CRLF>$'
wait "$flood" 2>/dev/null

# max_clients: a second server allowing 2 clients tells the third NO.
PORT2=$(free_port)
sed -e "s|listen = .*|listen = [ \"inet://127.0.0.1:$PORT2\" ]|" -e 's/max_clients = 300/max_clients = 2/' \
	"$TMP/cbv.conf" > "$TMP/cbv2.conf"
main_pid=$CPID
if start_cbvd "$TMP/cbvd2.log" -c "$TMP/cbv2.conf"; then
	pid2=$CPID
	exec 6<>"/dev/tcp/127.0.0.1/$PORT2" 7<>"/dev/tcp/127.0.0.1/$PORT2"
	sleep 0.2
	third=$(timeout 5 bash -c "exec 8<>/dev/tcp/127.0.0.1/$PORT2; IFS= read -r l <&8; echo \"\$l\"")
	exec 6>&- 7>&-
	[ "$third" = $'NO too many clients\r' ] && ok "max_clients: the third client is told NO" \
		|| bad "max_clients: the third client is told NO" "got: $third"
	kill -TERM "$pid2"
	wait "$pid2" 2>/dev/null
else
	bad "second cbvd starts" "$(cat "$TMP/cbvd2.log")"
fi
CPID=$main_pid

# Non-loopback listen is refused.
if "$CBVD" -f -c "$TMP/cbv.conf" -l inet://192.0.2.1:3535 2>"$TMP/remote.err"; then
	bad "non-loopback listen refused"
else
	grep -q 'not a loopback address' "$TMP/remote.err" && ok "non-loopback listen refused" \
		|| bad "non-loopback listen refused" "$(cat "$TMP/remote.err")"
fi

# SIGTERM: clean exit, socket removed, nothing left.
timeout 60 python3 "$TMP/client.py" "$TCP" 'VRFY "x@tarpit.test"' 'RUN!' '@HOLD' >/dev/null 2>&1 &
hold=$!
sleep 0.3
kill -TERM "$CPID"
rc=0
for _ in $(seq 50); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$CPID" 2>/dev/null; then
	bad "SIGTERM stops cbvd within 5 s"
else
	wait "$CPID"; rc=$?
	[ "$rc" -eq 0 ] && ok "SIGTERM: exit status 0" || bad "SIGTERM: exit status 0" "rc=$rc"
fi
kill "$hold" 2>/dev/null
wait "$hold" 2>/dev/null
[ ! -e "$SOCK" ] && ok "SIGTERM: socket removed" || bad "SIGTERM: socket removed"
grep -q 'shutting down' "$TMP/cbvd.log" && ok "SIGTERM: logged" || bad "SIGTERM: logged"
if grep -qiE 'AddressSanitizer|runtime error|LeakSanitizer' "$TMP"/cbvd*.log; then
	bad "no sanitizer reports" "$(grep -iE -A5 'Sanitizer|runtime error' "$TMP"/cbvd*.log | head -30)"
else
	ok "no sanitizer reports"
fi
left=$(ss -Htlnp 2>/dev/null | grep -c "pid=$CPID," || true)
[ "$left" -eq 0 ] && ok "nothing left listening" || bad "nothing left listening"

summary
