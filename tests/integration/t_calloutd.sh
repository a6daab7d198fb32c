#!/bin/bash
# Interop: our callout client (core/cbv_callout.c, `cbv verify --server`)
# against Debian's real calloutd (mailfromd 8.15).
#
# calloutd cannot be told a DNS port (adns: resolv.conf, port 53) nor an
# SMTP port (always 25).  So this test runs its own copy of the rig in a
# private network and mount namespace (unshare -mn): loopback only, the
# rig's dnsmasq on 127.0.0.1:53 and the rig's SMTP hosts on port 25, a
# resolv.conf bind-mounted over /etc/resolv.conf.  Nothing it starts is
# visible outside the namespace, and nothing survives it.
#
# Run by tests/integration/run.sh inside the rig; skips (exit 0) when
# calloutd, unshare or root are missing.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP" || exit 1
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/integration/exim/calloutd.sh"

skip_all() { skip "t_calloutd: $*"; echo "0 passed, 0 failed (skipped)"; exit 0; }

if [ "${1:-}" != "--calloutd-inner" ]; then
	why=$(calloutd_unusable) && skip_all "$why"
	need_built "$B/cbv"
	calloutd_reexec "$TOP/tests/integration/t_calloutd.sh"
	exit $?
fi

# ---- inside the namespace and the private rig ----------------------------
NS=$2

trap calloutd_stop EXIT
if calloutd_start "$NS" 2>"$NS/start.err"; then
	ok "calloutd listening on $CALLOUTD_UNIX_URL and $CALLOUTD_INET_URL"
else
	bad "calloutd did not start" "$(cat "$NS/start.err")"
fi
UNIX_URL=$CALLOUTD_UNIX_URL
INET_URL=$CALLOUTD_INET_URL
CPID=$CALLOUTD_PID

# calloutd resolves and connects; the profile only names the client side.
cbv_profile default 'helo = "cli.verifier.test"' 'timeout = 20s' 'starttls = never' >"$NS/cbv.conf"
V=("$B/cbv" verify -c "$NS/cbv.conf")

# expect_verify NAME WANT-RC PYTHON-ASSERTIONS -- cbv verify args...: runs
# with --json; the assertions see `r` (list of result objects).
expect_verify() {
	local name=$1 want_rc=$2 asserts=$3 out rc
	shift 4
	out=$("${V[@]}" --json "$@" 2>"$NS/err")
	rc=$?
	if [ "$rc" -ne "$want_rc" ]; then
		bad "$name" "exit $rc, want $want_rc; stdout: $out; stderr: $(head -c 500 "$NS/err")"
		return
	fi
	if python3 - "$out" "$asserts" 2>"$NS/perr" <<'PY'; then ok "$name"; else bad "$name" "$(tail -3 "$NS/perr"); $out"; fi
import json, sys
r = [json.loads(l) for l in sys.argv[1].splitlines()]
exec(sys.argv[2])
PY
}

# pass, with every last_poll field the server reports
expect_verify "pass over the UNIX socket, last_poll fields" 0 '
x = r[0]
assert x["status"] == "pass" and x["reason"] == "accepted", x
assert x["host"] == "mx.exim.test", x
assert x["greeting"].startswith("220 mx.exim.test ESMTP Exim"), x
assert x["helo"].startswith("250-mx.exim.test Hello cli.verifier.test"), x
assert x["sent"] == "RCPT TO:<alice@exim.test>", x
assert x["recv"] == "250 Accepted" == x["message"], x
' -- -S "$UNIX_URL" alice@exim.test

expect_verify "fail over TCP (550 5.1.1)" 1 '
x = r[0]
assert (x["status"], x["reason"], x["ecode"]) == ("fail", "mailbox_unknown", "5.1.1"), x
assert x["recv"].startswith("550 5.1.1 <nobody@exim.test>"), x
assert x["sent"] == "RCPT TO:<nobody@exim.test>", x
' -- -S "$INET_URL" nobody@exim.test

expect_verify "greylisted user is transient" 2 '
x = r[0]
assert (x["status"], x["reason"]) == ("transient", "greylisted"), x
assert x["recv"].startswith("451 4.7.1"), x
' -- -S "$INET_URL" grey@exim.test

expect_verify "421 to MAIL is transient, sent = MAIL FROM:<>" 2 '
x = r[0]
assert x["status"] == "transient" and x["sent"] == "MAIL FROM:<>", x
assert x["recv"].startswith("421 4.3.2"), x
' -- -S "$UNIX_URL" x@mid421.test

# (how long calloutd takes against the tarpit is bench/cbvd_bench.sh's to measure)
expect_verify "tarpit is transient (calloutd timeout)" 2 '
x = r[0]
assert x["status"] == "transient" and x["host"] == "mx.tarpit.test", x
assert x["greeting"] == "" and x["recv"] == "", x
' -- -S "$UNIX_URL" x@tarpit.test

expect_verify "null MX is calloutd's failure -> error" 3 '
x = r[0]
assert x["status"] == "error", x
assert "failure" in x["message"], x
' -- -S "$UNIX_URL" x@nullmx.test

expect_verify "-f sender reaches MAIL FROM (SET MAILFROM)" 0 '
assert r[0]["status"] == "pass", r
' -- -S "$UNIX_URL" -f probe@exim.test x@nullsender.test

expect_verify "-R MODE=hostonly HOST" 0 '
x = r[0]
assert x["status"] == "pass" and x["host"] == "127.0.0.30", x
assert x["recv"].startswith("250 2.1.5"), x
' -- -S "$UNIX_URL" -R 'MODE=hostonly HOST="127.0.0.30"' y@fast.test

expect_verify "refused VRFY (mode requires host) is e_callout_proto" 3 '
x = r[0]
assert (x["status"], x["reason"]) == ("error", "protocol_error"), x
assert "e_callout_proto: " in x["message"] and "mode requires host" in x["message"], x
' -- -S "$UNIX_URL" -R 'MODE=mxonly' y@fast.test

# One connection, many jobs: calloutd keeps failed jobs queued and reports
# them again on the next RUN; each answer must be this address's own.
expect_verify "one session: transient, pass, fail, transient, pass" 1 '
want = [("grey@exim.test", "transient"), ("bob@exim.test", "pass"),
        ("carol@exim.test", "fail"), ("x@refused.test", "transient"),
        ("alice@fast.test", "pass")]
got = [(x["address"], x["status"]) for x in r]
assert got == want, got
' -- -S "$INET_URL" grey@exim.test bob@exim.test carol@exim.test x@refused.test alice@fast.test

expect_verify "second ask is answered from calloutd's cache (no progress lines)" 0 '
x = r[0]
assert x["status"] == "pass" and x["host"] == "" and x["recv"] == "", x
assert x["message"] == "250 2.1.5 callout server: success", x
' -- -S "$UNIX_URL" alice@exim.test

# Plain-text output and exit code, same as in-process
out=$("${V[@]}" -S "$UNIX_URL" postmaster@exim.test 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == "postmaster@exim.test pass accepted 250 Accepted" ]]; then
	ok "text output line"; else bad "text output line" "rc=$rc: $out"; fi

expect_verify "a peer that is not a callout server (Exim on :25)" 3 '
x = r[0]
assert x["status"] == "error" and x["message"].startswith("451 4.5.0 e_callout_proto: "), x
assert "220 mx.exim.test" in x["message"], x
' -- -S inet://127.0.0.10:25 alice@exim.test

expect_verify "nothing listening: transient connect_failed" 2 '
assert (r[0]["status"], r[0]["reason"]) == ("transient", "connect_failed"), r
' -- -S inet://127.0.0.1:1 alice@exim.test

out=$("${V[@]}" -S "$UNIX_URL" -R 'HOST=a"b' x@fast.test 2>&1); rc=$?
[ $rc -eq 64 ] && ok "bad -R is a usage error, nothing sent" || bad "bad -R" "rc=$rc $out"
out=$("${V[@]}" -S 'inet://127.0.0.1:99999' x@fast.test 2>&1); rc=$?
[ $rc -eq 64 ] && ok "bad -S URL is a usage error" || bad "bad -S URL" "rc=$rc $out"
out=$("${V[@]}" -S "$UNIX_URL" $'alice\r\nQUIT@exim.test' 2>&1); rc=$?
[ $rc -eq 1 ] && [[ $out == *"fail bad_syntax 553 5.1.3"* ]] && ok "CR/LF in address: bad_syntax, nothing sent" \
	|| bad "CR/LF in address" "rc=$rc $out"

# The core client straight through its API (check_callout's calloutd case).
if [ -x "$B/tests/check_callout" ]; then
	if CBV_CALLOUTD_URL="$UNIX_URL" CK_RUN_CASE=calloutd "$B/tests/check_callout" > "$NS/check.log" 2>&1; then
		ok "core client API against calloutd (check_callout calloutd)"
	else
		bad "core client API against calloutd" "$(tail -5 "$NS/check.log")"
	fi
else
	skip "core client API ($B/tests/check_callout not built)"
fi

# calloutd survived all of it, and stops cleanly
kill -0 "$CPID" 2>/dev/null && ok "calloutd still running" || bad "calloutd died" "$(tail -5 "$NS/calloutd.log")"
calloutd_stop
if ! command -v pgrep >/dev/null; then
	bad "calloutd left running: cannot tell, no pgrep (Debian package procps)"
elif pgrep -f -- "--config-file=$NS/calloutd.conf" >/dev/null; then
	bad "calloutd left running" "$(pgrep -af -- "--config-file=$NS/calloutd.conf")"
else
	ok "no calloutd left running"
fi

summary
