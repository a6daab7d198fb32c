#!/bin/bash
# cbv.so's mailfromd-style functions inside a real Exim (exim -be, and a
# -bs session through exim-conf/cbv_callout.acl): callout_open, callout_do,
# callout_close, and callout{} with and without callout_url, against
# build/cbvd (started here, on a UNIX socket and loopback TCP) and against
# Debian's calloutd (in a private namespace, see exim/calloutd.sh).
# Results, last_poll fields from the progress lines, taint, vars_acl,
# reconnection after a timeout, e_callout_proto, bad descriptors.  Also
# mailfromd's own callout.mfl against cbvd (mailfromd --run).
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/exim/lib.sh"
. "$TOP/tests/integration/exim/calloutd.sh"
SELF=$TOP/tests/integration/t_exim_callout.sh

# The expansions: OP{...} open, DO{FD}{ADDRESS}{REST}, CL{FD}, LP{FIELD}.
set_ops() {
	OP="\${dlfunc{$SO}{callout_open}"
	DO="\${dlfunc{$SO}{callout_do}"
	CL="\${dlfunc{$SO}{callout_close}"
	CO="\${dlfunc{$SO}{callout}"
	LP="\${dlfunc{$SO}{last_poll}"
}

# The checks both servers pass (cbv.conf in $T/cbv.conf).  calloutd caches
# answers (a cached one has no progress lines), so every check that looks
# at last_poll asks for an address not asked before; fast.test's MTA
# accepts any local part.
common_checks() { # WHO UNIX_URL INET_URL
	local who=$1 unix=$2 inet=$3 C="config=$T/cbv.conf"
	be_expect "$who: callout_open returns descriptor 1" "$OP{$unix}{$C}}" 1
	be_expect "$who: open, do, close in one process" \
		"$OP{$unix}{$C}}/$DO{1}{alice@exim.test}}/$CL{1}}/$OP{$inet}{$C}}" "1/success//1"
	be "$OP{$unix}{$C}}|$DO{1}{bob@exim.test}}|$LP{status}}|$LP{host}}|$LP{sent}}|$LP{recv}}|$LP{greeting}}|$LP{helo}}|$LP{cache}}"
	if [[ $rc -eq 0 && $out == "1|success|pass|mx.exim.test|RCPT TO:<bob@exim.test>|250 "* ]] &&
		grep -q '|220 mx\.exim\.test ESMTP Exim' <<<"$out" && grep -q '|250-mx\.exim\.test Hello ' <<<"$out" &&
		[[ $out == *"|0" ]]; then
		ok "$who: last_poll host, sent, recv, greeting, helo from the progress lines"
	else
		bad "$who: last_poll fields" "rc=$rc out=$out err=$err"
	fi
	be_expect "$who: the four words (one connection, several jobs)" \
		"$OP{$inet}{$C}} $DO{1}{nobody@exim.test}} $DO{1}{grey@exim.test}} $DO{1}{postmaster@exim.test}} $DO{1}{w1@fast.test}{}}" \
		"1 not_found temp_failure success success"
	be "$OP{$unix}{$C}}|$DO{1}{nobody2@exim.test}}|$LP{reason}}|$LP{ecode}}|$LP{message}}"
	DETAIL="out=$out err=$err"
	check "$who: not_found: reason and ecode from the RECV line" \
		grep -Eq '^1\|not_found\|mailbox_unknown\|5\.1\.1\|550 5\.1\.1 <nobody2@exim\.test>' <<<"$out"
	be_expect "$who: REST MODE=hostonly HOST=127.0.0.30" \
		"$OP{$unix}{$C}}|$DO{1}{h1@fast.test}{MODE=hostonly HOST=\"127.0.0.30\"}}|$LP{host}}" "1|success|127.0.0.30"
	# REST from message or connection data (here last_poll's host, which
	# is remote text): MAILFROM may come from there, HOST may not.
	be_error "$who: tainted REST naming HOST is ERROR" \
		"$OP{$unix}{$C}}$DO{1}{h2@fast.test}{MODE=hostonly HOST=\"127.0.0.30\"}}$DO{1}{h3@fast.test}{MODE=hostonly HOST=$LP{host}}}}" \
		'REST is tainted .*only MAILFROM may come from there'
	be_expect "$who: tainted REST with MAILFROM only is used" \
		"$OP{$unix}{$C}}$DO{1}{h4@fast.test}}|$DO{1}{h5@fast.test}{MAILFROM=probe@$LP{host}}}}|$LP{host}}" \
		"1success|success|mx.fast.test"
	# Remote text is tainted, our words are not.
	be "$OP{$unix}{$C}}$DO{1}{t1@fast.test}}\${lookup{x}lsearch{$LP{greeting}}}}"
	DETAIL="rc=$rc out=$out err=$err"
	check "$who: greeting is tainted (refused as a lookup file name)" grep -q 'Tainted filename' <<<"$out$err"
	be "$OP{$unix}{$C}}$DO{1}{t2@fast.test}}\${lookup{x}lsearch{$LP{host}}}}"
	DETAIL="rc=$rc out=$out err=$err"
	check "$who: host is tainted" grep -q 'Tainted filename' <<<"$out$err"
	: >"$T/success"
	chmod 644 "$T/success"
	be "\${lookup{x}lsearch{$T/$DO{$OP{$unix}{$C}}}{t3@fast.test}}}{y}{n}}"
	DETAIL="rc=$rc out=$out err=$err"
	check "$who: the result word is clean (usable in a file name)" test "$rc" -eq 0 -a "$out" = n
	# A refused VRFY: ERROR naming e_callout_proto; the descriptor reconnects.
	be "$OP{$unix}{$C}}|$DO{1}{y@fast.test}{MODE=mxonly}}"
	if [[ $rc -ne 0 ]] && grep -q 'callout_do: e_callout_proto: .*mode requires host' <<<"$out$err"; then
		ok "$who: a refused VRFY is ERROR naming e_callout_proto"
	else
		bad "$who: refused VRFY is ERROR naming e_callout_proto" "rc=$rc out=$out err=$err"
	fi
	be_lines "$OP{$unix}{$C}}" "$DO{1}{y@fast.test}{MODE=mxonly}}" "$DO{1}{r1@fast.test}}|$LP{host}}"
	if [[ $out == "1|Failed: cbv: callout_do: e_callout_proto: "*"|success|mx.fast.test" ]]; then
		ok "$who: after e_callout_proto the descriptor reconnects and answers"
	else
		bad "$who: reconnect after e_callout_proto" "out=$out err=$err"
	fi
	be_expect "$who: callout{} through callout_url" \
		"$CO{co1@fast.test}{}{$C profile=viaserver}}|$LP{host}}|$LP{sent}}" \
		"success|mx.fast.test|RCPT TO:<co1@fast.test>"
	be_expect "$who: callout{} SENDER is sent as MAILFROM (nullsender.test refuses <>)" \
		"$CO{x@nullsender.test}{probe@exim.test}{$C profile=viaserver}}|$CO{co2@fast.test}{}{$C profile=viaserver}}" \
		"success|success"
}

# ---- inside the calloutd namespace ------------------------------------------
if [[ ${1:-} == --calloutd-inner ]]; then
	NS=$2
	skip_if_sanitized
	front_setup
	set_ops
	trap 'calloutd_stop; front_cleanup' EXIT
	if calloutd_start "$NS"; then ok "calloutd listening"; else bad "calloutd starts"; summary; exit; fi
	cbv_profile viaserver "callout_url = \"$CALLOUTD_UNIX_URL\"" 'helo = "verifier.test"' 'timeout = 20s' \
		'starttls = never' >>"$T/cbv.conf"
	common_checks calloutd "$CALLOUTD_UNIX_URL" "$CALLOUTD_INET_URL"
	be_expect "calloutd: null MX is calloutd's failure" "$OP{$CALLOUTD_UNIX_URL}{config=$T/cbv.conf}}|$DO{1}{x@nullmx.test}}" "1|failure"
	be_expect "calloutd: a cached answer: no progress lines, cache = 1" \
		"$OP{$CALLOUTD_INET_URL}{config=$T/cbv.conf}}|$DO{1}{alice@exim.test}}|$LP{cache}}|$LP{host}}" "1|success|1|"
	# starttls = require cannot be said to calloutd: refused, never weakened.
	be_error "calloutd: starttls=require is an ERROR, not opportunistic" \
		"$OP{$CALLOUTD_UNIX_URL}{config=$T/cbv.conf starttls=require}}" \
		'callout_open: .*starttls = require cannot be honoured'
	be_error "calloutd: callout{} with starttls=require is an ERROR" \
		"$CO{req1@fast.test}{}{config=$T/cbv.conf profile=viaserver starttls=require}}" \
		'callout: .*starttls = require cannot be honoured'
	be_error "calloutd: Exim on :25 is not a callout server" "$OP{inet://127.0.0.10:25}}" \
		'callout_open: e_callout_proto: inet://127\.0\.0\.10:25: greeting: 220 mx\.exim\.test'
	kill -0 "$CALLOUTD_PID" 2>/dev/null && ok "calloutd still running" || bad "calloutd died" "$(tail -5 "$NS/calloutd.log")"
	calloutd_stop
	summary
	exit
fi

# ---- against cbvd in the normal rig -------------------------------------------
skip_if_sanitized
need_built "$B/cbvd"
nm -D "$B/cbv.so" | awk '$2 == "T" {print $3}' | sort | tr '\n' ' ' >"/tmp/cbv-nm.$$"
exports=$(cat "/tmp/cbv-nm.$$")
rm -f "/tmp/cbv-nm.$$"
front_setup
set_ops
ECHO_PID=
cleanup() {
	cbvd_stop
	[[ -n $ECHO_PID ]] && { kill "$ECHO_PID" 2>/dev/null; wait "$ECHO_PID" 2>/dev/null; }
	front_cleanup
}
trap cleanup EXIT

[[ $exports == "callout callout_close callout_do callout_open default_callout_server_url last_poll preload smtp_callback_verify " ]] &&
	ok "cbv.so exports exactly the eight dlfuncs" || bad "cbv.so exports" "$exports"

mkdir -p "$T/run"
cbvd_dirs "$T/run"
SOCK=$T/run/cbvd.sock
PORT=$(free_port)
UNIX_URL="unix://$SOCK"
INET_URL="inet://127.0.0.1:$PORT"
{
	rig_profile default 'helo = "verifier.test"' 'timeout = 10s' 'command_timeout = 5s'
	printf 'server {\n  listen = [ "%s" "%s" ]\n}\n' "$UNIX_URL" "$INET_URL"
} >"$T/cbvd.conf"
if cbvd_start "$B/cbvd" "$T/cbvd.log" -c "$T/cbvd.conf"; then ok "cbvd started"; else
	bad "cbvd starts" "$(cat "$T/cbvd.log")"; summary; exit; fi

# Profiles of the front's cbv.conf: through cbvd, or in-process with the
# default deny_networks (loopback refused: error/forbidden_target).
{
	cbv_profile viaserver "callout_url = \"$UNIX_URL\"" 'vars_acl = cbv_setvars'
	rig_profile -D inprocess
	cbv_profile impatient 'timeout = 1s'
} >>"$T/cbv.conf"
C="config=$T/cbv.conf"

common_checks cbvd "$UNIX_URL" "$INET_URL"

be_expect "cbvd: 5.7.1 at RCPT is failure (calloutd: not_found)" "$OP{$UNIX_URL}{$C}}|$DO{1}{x@policy.test}}" "1|failure"
be_expect "cbvd: REST MODE=hostfirst HOST: the host before the MX" \
	"$OP{$UNIX_URL}{$C}}|$DO{1}{alice@exim.test}{MODE=hostfirst HOST=127.0.0.30}}|$LP{host}}" "1|success|127.0.0.30"
be_expect "cbvd: REST MODE=mxfirst HOST: the host after the dead MX hosts" \
	"$OP{$UNIX_URL}{$C}}|$DO{1}{x@dead.test}{MODE=mxfirst HOST=127.0.0.30}}|$LP{host}}" "1|success|127.0.0.30"
be_expect "callout{} without callout_url verifies in-process" \
	"$CO{alice@exim.test}{}{$C profile=inprocess}}|$LP{reason}}" "failure|forbidden_target"
be_expect "callout{} with callout_url: the server's deny_networks, not ours" \
	"$CO{alice@exim.test}{}{$C profile=inprocess callout_url=$UNIX_URL}}|$LP{reason}}" "success|accepted"
grep -q 'cbvd: local: 0000000000 <alice@exim.test> success' "$T/cbvd.log" &&
	ok "callout{} reached cbvd with SID local:" || bad "callout{} SID" "$(tail -5 "$T/cbvd.log")"
be_expect "vars_acl runs after callout{} through the server" \
	"$CO{nobody@exim.test}{}{$C profile=viaserver}}|\$acl_m_smtp_cbv_result|\$acl_m_last_poll_host|\$acl_m_last_poll_sent" \
	"not_found|fail|mx.exim.test|RCPT TO:<nobody@exim.test>"
be_expect "vars_acl runs after callout_do (OPTIONS of callout_open)" \
	"$OP{$INET_URL}{$C vars_acl=cbv_setvars}}|$DO{1}{grey@exim.test}}|\$acl_m_smtp_cbv_result|\$acl_m_last_poll_reason" \
	"1|temp_failure|transient|greylisted"

# mailfromd's own view (issue 11.10): last_poll_* give mailfromd's values
# (first line, "nothing"), our fields stay full; default_callout_server_url.
be_expect "mailfromd view: 554 greeting: last_poll_sent nothing, recv the greeting" \
	"$OP{$UNIX_URL}{$C}}|$DO{1}{x@greet554.test}}|$LP{last_poll_sent}}|$LP{last_poll_recv}}|$LP{sent}}|$LP{reason}}" \
	"1|failure|nothing|554 5.3.2 No service here||greeting_refused"
be "$OP{$UNIX_URL}{$C}}|$DO{1}{alice@exim.test}}|$LP{last_poll_helo}}|\${if >{\${strlen:$LP{helo}}}}{\${strlen:$LP{last_poll_helo}}}}{full}{same}}"
DETAIL="rc=$rc out=$out err=$err"
check "mailfromd view: last_poll_helo is the first line, helo the full reply" \
	grep -Eq '^1\|success\|250-mx\.exim\.test Hello [^|]*\|full$' <<<"$out"
be_expect "vars_acl: \$acl_m_last_poll_sent is mailfromd's (nothing)" \
	"$CO{y@greet554.test}{}{$C profile=viaserver}}|\$acl_m_last_poll_sent|\$acl_m_last_poll_recv" \
	"failure|nothing|554 5.3.2 No service here"
be_expect "default_callout_server_url: the profile's callout_url" \
	"\${dlfunc{$SO}{default_callout_server_url}{$C profile=viaserver}}|\${dlfunc{$SO}{default_callout_server_url}{$C profile=inprocess}}" \
	"$UNIX_URL|"
be_expect "cbvd: starttls=require reaches cbvd (no plain-text success)" \
	"$CO{req2@fast.test}{}{$C profile=viaserver starttls=require}}|$LP{reason}}" "failure|tls_required"
be_expect "cbvd: elapsed is set for a synthesized timeout (issue 11.9)" \
	"$OP{$UNIX_URL}{$C profile=impatient}}|$DO{1}{x@tarpit.test}}|\${if >={$LP{elapsed}}}{900}{y}{n}}" "1|temp_failure|y"

# Our deadline (timeout=1s) before cbvd's: temp_failure, then the same
# descriptor reconnects and answers.
be_expect "callout_do past the deadline: temp_failure/timeout, then reconnects" \
	"$OP{$UNIX_URL}{$C profile=impatient}}|$DO{1}{x@tarpit.test}}|$LP{reason}}|$DO{1}{alice@exim.test}}" \
	"1|temp_failure|timeout|success"
# Nothing listening: the descriptor is still given; callout_do says temp_failure.
be "$OP{unix://$T/run/none.sock}{$C}}|$DO{1}{alice@exim.test}}|$LP{status}}|$LP{reason}}|$LP{message}}"
DETAIL="rc=$rc out=$out err=$err"
check "server down: descriptor given, callout_do temp_failure/connect_failed" \
	grep -Eq "^1\|temp_failure\|transient\|connect_failed\|451 4\.4\.1 unix://$T/run/none\.sock: connect: " <<<"$out"
be_expect "empty address: success at once, as callout.mfl" "$OP{$UNIX_URL}{$C}}|$DO{1}{}}|$DO{1}{<>}}" "1|success|success"
be "$OP{$UNIX_URL}{$C}}|$DO{1}{\${sg{alice#QUIT@exim.test}{#}{\\r\\n}}}}|$LP{reason}}"
DETAIL="rc=$rc out=$out err=$err"
check "CR/LF in the address: not_found/bad_syntax, nothing sent" test "$out" = "1|not_found|bad_syntax"

# A peer that does not speak the protocol: ERROR naming e_callout_proto.
be_error "Exim SMTP server is not a callout server" "$OP{inet://127.0.0.10:$CBV_RIG_PORT}}" \
	"callout_open: e_callout_proto: inet://127\\.0\\.0\\.10:$CBV_RIG_PORT: greeting: 220 mx\\.exim\\.test"
EPORT=$(free_port)
# An echo server: greets like a callout server, then says everything back.
python3 - "$EPORT" <<'PY' &
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(8); l.settimeout(60)
def serve(c):
    c.sendall(b"OK echo\r\n")
    f = c.makefile("rb")
    for line in f:
        c.sendall(b"OK\r\n" if line[:4] in (b"SID ", b"SET ") else line)
while True:
    try: c, _ = l.accept()
    except OSError: break
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
ECHO_PID=$!
for _ in $(seq 50); do ss -Hltn | grep -q "127.0.0.1:$EPORT " && break; sleep 0.1; done
be_error "echo peer: callout_do is ERROR naming e_callout_proto" \
	"$DO{$OP{inet://127.0.0.1:$EPORT}{$C}}}{alice@exim.test}}" \
	'callout_do: e_callout_proto: inet://127\.0\.0\.1:[0-9]+: VRFY: VRFY "alice@exim\.test"'

# Misuse: ERROR with a message, never a crash.
be_error "callout_do on a descriptor never opened" "$DO{1}{a@exim.test}}" 'callout_do: bad descriptor "1"'
be_error "callout_do with a non-number" "$DO{abc}{a@exim.test}}" 'bad descriptor "abc"'
be_error "callout_do with 0" "$DO{0}{a@exim.test}}" 'bad descriptor "0"'
be_error "callout_do with 17" "$DO{17}{a@exim.test}}" 'bad descriptor "17"'
be_error "callout_do after callout_close" "$OP{$UNIX_URL}{$C}}$CL{1}}$DO{1}{a@exim.test}}" 'bad descriptor "1"'
be_error "callout_close twice" "$OP{$UNIX_URL}{$C}}$CL{1}}$CL{1}}" 'callout_close: bad descriptor "1"'
be_error "callout_do with 1 argument" "$DO{1}}" 'callout_do: expects 2 or 3 arguments'
be_error "callout_open with 3 arguments" "$OP{$UNIX_URL}{}{x}}" 'callout_open: expects 1 or 2 arguments'
be_error "callout_close with 0 arguments" "\${dlfunc{$SO}{callout_close}}" 'callout_close: expects 1 argument'
be_error "callout_open with a bad URL" "$OP{http://127.0.0.1/}}" 'callout_open: callout URL: must be'
be_error "callout_open with bad OPTIONS" "$OP{$UNIX_URL}{$C colour=blue}}" 'callout_open: bad OPTIONS: .*colour'
be_error "callout_do with a bad REST" "$OP{$UNIX_URL}{$C}}$DO{1}{a@exim.test}{TLS=never}}" 'callout_do: bad REST: .*unknown key'
opens=()
for i in $(seq 17); do opens+=("$OP{$UNIX_URL}{$C}}"); done
be_lines "${opens[@]}"
DETAIL="out=$out err=$err"
check "a 17th open descriptor is refused" \
	grep -q '^1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|Failed: cbv: callout_open: all 16 descriptors are open' <<<"$out"
be_lines "${opens[@]:1}" "$CL{5}}" "$OP{$UNIX_URL}{$C}}|$DO{5}{alice@exim.test}}"
DETAIL="out=$out err=$err"
check "16 open, one closed: the next open reuses its number" test "$out" = "1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16||5|success"

# exim-conf/cbv_callout.acl in a -bs session: mailfromd's callout policy,
# once with callout_open/callout_do (CBV_CALLOUT_URL), once with callout{}.
for how in url profile; do
	if [[ $how == url ]]; then defs=(-DFRONT_CALLOUT=1 "-DCBV_CALLOUT_URL=$UNIX_URL")
	else defs=(-DFRONT_CALLOUT=1 "-DCBV_OPTIONS=config=$T/cbv.conf profile=viaserver"); fi
	out=$(bs_session "${defs[@]}" -- 'EHLO client.test' 'MAIL FROM:<nobody@exim.test>' 'MAIL FROM:<grey@exim.test>' \
		'MAIL FROM:<alice@exim.test>' 'RCPT TO:<x@cbv.test>' 'QUIT')
	if grep -q '^550 5\.1\.0 Sender validity not confirmed' <<<"$out" && grep -q '^450 4\.1\.0 Try again later' <<<"$out" &&
		grep -q '^250 OK' <<<"$out" && ! grep -q '^451' <<<"$out"; then
		ok "cbv_callout.acl ($how): not_found 550, temp_failure 450, success accepted"
	else
		bad "cbv_callout.acl ($how)" "$out"
	fi
done
# mailfromd's own callout.mfl (callout_open, callout_do, callout_close,
# callout, last_poll_*) against cbvd: mailfromd --run with an MFL script.
if command -v mailfromd >/dev/null; then
	cat >"$T/t.mf" <<EOF
require callout
require status
func main(...) returns number
do
  number fd callout_open("$UNIX_URL")
  number r callout_do(fd, "alice@exim.test")
  echo "alice=%r host=%last_poll_host sent=%last_poll_sent recv=%last_poll_recv cache=%cache_used"
  set r callout_do(fd, "nobody@exim.test")
  echo "nobody=%r/%e_not_found"
  set r callout_do(fd, "grey@exim.test")
  echo "grey=%r/%e_temp_failure"
  set r callout_do(fd, "x@policy.test")
  echo "policy=%r/%e_failure"
  set r callout_do(fd, "y@nowhere.test", "MODE=hostonly HOST=127.0.0.30")
  echo "hostonly=%r host=%last_poll_host"
  callout_close(fd)
  set callout_server_url "$INET_URL"
  set r callout("bob@exim.test")
  echo "callout=%r sent=%last_poll_sent"
  return 0
done
EOF
	out=$(timeout 60 mailfromd --no-config --run "$T/t.mf" 2>&1 | grep -v 'stack segment expanded')
	want="alice=0 host=mx.exim.test sent=RCPT TO:<alice@exim.test> recv=250 Accepted cache=0
nobody=1/1
grey=3/3
policy=2/2
hostonly=0 host=127.0.0.30
callout=0 sent=RCPT TO:<bob@exim.test>"
	[[ $out == "$want" ]] && ok "mailfromd's own callout.mfl against cbvd (mailfromd --run)" ||
		bad "mailfromd's callout.mfl against cbvd" "$out"
else
	skip "mailfromd not installed"
fi

cbvd_stop
grep -qiE 'AddressSanitizer|runtime error' "$T/cbvd.log" && bad "cbvd sanitizer report" "$(head -20 "$T/cbvd.log")"

# ---- against Debian's calloutd, in its namespace ------------------------------
if why=$(calloutd_unusable); then
	skip "calloutd: $why"
else
	inner=$(calloutd_reexec "$SELF" 2>"$T/calloutd.err")
	printf '%s\n' "$inner" | grep -Ev '^[0-9]+ passed|# SKIP' | sed 's/^/  /'
	if [[ $inner =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
		T_PASS=$((T_PASS + BASH_REMATCH[1]))
		T_FAIL=$((T_FAIL + BASH_REMATCH[2]))
		[[ ${BASH_REMATCH[1]} -gt 0 ]] || bad "calloutd part ran nothing" "$inner"
	else
		bad "calloutd part" "$inner"$'\n'"$(tail -20 "$T/calloutd.err")"
	fi
fi
summary
