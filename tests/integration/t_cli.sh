#!/bin/bash
# The cbv command-line tool against the loopback rig: output format, JSON,
# exit codes, -o overrides, -v transcript, check-config.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
B=${B:-build}
CBV="$B/cbv"

need_rig
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
{
	echo "# rig profile: the rig's DNS and port, loopback allowed"
	rig_profile default 'helo = "verifier.test"' 'timeout = 10s'
	rig_profile strict 'starttls = require' 'timeout = 5s'
} >"$TMP/cbv.conf"
V=("$CBV" verify -c "$TMP/cbv.conf")

expect_run "pass exits 0" 0 '^alice@exim\.test pass accepted 250 ' -- "${V[@]}" alice@exim.test
expect_run "unknown user exits 1" 1 '^nobody@exim\.test fail mailbox_unknown 550 5\.1\.1 ' -- "${V[@]}" nobody@exim.test
expect_run "greylisted exits 2" 2 '^grey@exim\.test transient greylisted 451 ' -- "${V[@]}" grey@exim.test
expect_run "policy refusal exits 3" 3 '^x@policy\.test error policy_refused 550 5\.7\.1 ' -- "${V[@]}" x@policy.test
expect_run "null MX" 1 '^x@nullmx\.test fail null_mx 556 5\.1\.10 ' -- "${V[@]}" x@nullmx.test
expect_run "NXDOMAIN" 1 '^x@nowhere\.test fail no_domain ' -- "${V[@]}" x@nowhere.test
expect_run "fail wins over transient in exit status" 1 'grey@exim\.test transient' -- "${V[@]}" grey@exim.test nobody@exim.test
expect_run "transient wins over error" 2 'x@policy\.test error' -- "${V[@]}" x@policy.test grey@exim.test
expect_run "one line per address" 0 '^bob@exim\.test pass' -- "${V[@]}" alice@exim.test bob@exim.test
n=$("${V[@]}" alice@exim.test bob@exim.test nobody@exim.test 2>/dev/null | wc -l)
DETAIL="got $n" check "three addresses, three lines" test "$n" -eq 3
# Several addresses at one domain: one session, one MAIL, one RCPT each (issue 9.3).
out=$("${V[@]}" -v alice@exim.test nobody@exim.test bob@exim.test 2>&1 >"$TMP/multi.out")
DETAIL="$out" check "three addresses at one domain: one connection" \
	test "$(grep -c '^\*\*\* connecting to' <<<"$out")" -eq 1
DETAIL="$out" check "three addresses at one domain: one MAIL FROM, three RCPTs" \
	eval '[[ $(grep -c "^>>> MAIL FROM" <<<"$out") -eq 1 && $(grep -c "^>>> RCPT TO" <<<"$out") -eq 3 ]]'
got=$(cut -d' ' -f1-3 "$TMP/multi.out" | tr '\n' ,)
DETAIL="$got" check "three addresses at one domain: each its own verdict, in order" \
	test "$got" = "alice@exim.test pass accepted,nobody@exim.test fail mailbox_unknown,bob@exim.test pass accepted,"
before=$(cat "$CBV_RIG_DIR/rcpt.log" 2>/dev/null | wc -l)
out=$("${V[@]}" -v a@count.test unknown1@count.test x@nullmx.test b@count.test 2>&1 >"$TMP/multi.out")
after=$(cat "$CBV_RIG_DIR/rcpt.log" 2>/dev/null | wc -l)
DETAIL="rcpt.log +$((after - before)); $out" check "counting MTA: one connection, three RCPTs counted" \
	eval '[[ $(grep -c "^\*\*\* connecting to" <<<"$out") -eq 1 && $((after - before)) -eq 3 ]]'
expect_run "CR/LF escaped, bad_syntax" 1 '^alice\\x0d\\x0aQUIT@exim\.test fail bad_syntax 553 5\.1\.3 ' -- "${V[@]}" $'alice\r\nQUIT@exim.test'
expect_run "-f sender" 0 'pass accepted' -- "${V[@]}" -f probe@exim.test x@nullsender.test
expect_run "-f bad sender is error" 3 'error bad_syntax' -- "${V[@]}" -f 'a b' alice@exim.test
expect_run "-p profile (require TLS)" 3 'error tls_required' -- "${V[@]}" -p strict alice@fast.test
expect_run "-o overrides the profile" 0 'pass accepted' -- "${V[@]}" -p strict -o starttls=opportunistic alice@fast.test
expect_run "-o deny_networks= default list refuses loopback" 3 'error forbidden_target' -- "${V[@]}" -o 'deny_networks=127.0.0.0/8 ::1/128' alice@exim.test
expect_run "-o timeout against the tarpit" 2 'transient timeout 451 4\.4\.' -- "${V[@]}" -o timeout=2s x@tarpit.test
expect_run "-o map" 0 'pass accepted' -- "${V[@]}" -o 'map=[ "mapped.test" = "exim.test" ]' alice@mapped.test
expect_run "unknown -o key is a usage error" 64 '^$' -- "${V[@]}" -o nosuchkey=1 alice@exim.test
expect_run "-o without = is a usage error" 64 '^$' -- "${V[@]}" -o timeout alice@exim.test
expect_run "no address is a usage error" 64 '^$' -- "${V[@]}"
expect_run "missing explicit config" 64 '^$' -- "$CBV" verify -c "$TMP/none.conf" alice@exim.test
expect_run "-c /nonexistent fails, nothing verified" 64 '^$' -- "$CBV" verify -c /nonexistent/cbv.conf alice@exim.test
expect_text "-c /nonexistent: stderr names the path" "$RUN_ERR" '^cbv: /nonexistent/cbv.conf: No such file or directory$'
expect_run "check-config -c /nonexistent fails" 64 '^$' -- "$CBV" check-config -c /nonexistent/cbv.conf
expect_run "unknown profile" 64 '^$' -- "${V[@]}" -p nosuch alice@exim.test

# Every rig server through the tool: exit status and status/reason.
while read -r addr want_rc want; do
	expect_run "rig: $addr" "$want_rc" "^$addr $want " -- "${V[@]}" -o timeout=4s "$addr"
done <<'ROWS'
alice@implicit.test 0 pass accepted
alice@two.test 0 pass accepted
alice@tls.test 0 pass accepted
grey@grey.test 2 transient greylisted
x@dead.test 2 transient connect_failed
x@refused.test 2 transient connect_failed
x@servfail.test 2 transient dns_failure
x@nomail.test 1 fail no_mail_host
x@drip.test 2 transient timeout
x@multiline.test 3 error protocol_error
x@longline.test 3 error protocol_error
x@garbage.test 3 error protocol_error
x@earlyclose.test 2 transient connect_failed
x@mid421.test 2 transient temp_failure
x@greet554.test 3 error greeting_refused
x@nullsender.test 3 error sender_refused
alice@fast.test 0 pass accepted
unknown2@fast.test 1 fail mailbox_unknown
ROWS
expect_run "rig: tls.test without STARTTLS" 3 'error tls_required 530 ' -- "${V[@]}" -o starttls=never alice@tls.test
expect_run "rig: tls.test STARTTLS on demand" 0 'pass accepted' -- "${V[@]}" -o starttls=ondemand alice@tls.test

# JSON: one object per line with every key
out=$("${V[@]}" --json alice@exim.test nobody@exim.test 2>/dev/null)
if python3 - "$out" <<'PY' 2>"$TMP/err"; then ok "--json objects and keys"; else bad "--json objects and keys" "$(cat "$TMP/err")"; fi
import json, sys
lines = sys.argv[1].splitlines()
assert len(lines) == 2, lines
keys = ["address", "status", "reason", "message", "host", "ip", "greeting", "helo",
        "sent", "recv", "ecode", "tls", "elapsed_ms", "cache", "age"]
a, b = (json.loads(l) for l in lines)
for o in (a, b):
    assert sorted(o) == sorted(keys), sorted(o)
assert a["status"] == "pass" and a["reason"] == "accepted" and a["host"] == "mx.exim.test", a
assert a["tls"].startswith("TLSv1."), a["tls"]
assert a["greeting"].startswith("220 "), a
assert "\n" in a["helo"], a["helo"]
assert b["status"] == "fail" and b["ecode"] == "5.1.1", b
assert isinstance(a["elapsed_ms"], int) and a["cache"] is False and a["age"] == 0
PY

# -v: the transcript on stderr, not stdout
out=$("${V[@]}" -v alice@exim.test 2>"$TMP/err")
if grep -q '^>>> RCPT TO:<alice@exim.test>' "$TMP/err" && grep -q '^<<< 220 ' "$TMP/err" &&
	grep -q '^>>> STARTTLS' "$TMP/err" && [ "$(wc -l <<<"$out")" -eq 1 ]; then
	ok "-v transcript"
else
	bad "-v transcript" "$(head -c 600 "$TMP/err")"
fi

# check-config
expect_run "check-config prints effective values" 0 'starttls = require' -- "$CBV" check-config -c "$TMP/cbv.conf"
printf 'smtp_cbv "x" {\n  port = 99999\n}\n' > "$TMP/bad.conf"
out=$("$CBV" check-config -c "$TMP/bad.conf" 2>&1)
rc=$?
if [ $rc -eq 64 ] && grep -q "bad.conf:2:" <<<"$out"; then ok "check-config names file:line"; else bad "check-config names file:line" "rc=$rc $out"; fi
# the Redis secret file: checked as the store would, never printed
printf 'hunter2-secret\n' >"$TMP/redis.secret"
chmod 640 "$TMP/redis.secret"
printf 'smtp_cbv "r" {\n  cache = "redis://127.0.0.1:1"\n  cache_password_file = %s\n}\n' \
	"$TMP/redis.secret" >"$TMP/redis.conf"
out=$("$CBV" check-config -c "$TMP/redis.conf" 2>&1)
rc=$?
DETAIL="rc=$rc $out"
check "check-config: a group-readable password file is an error naming the profile" \
	eval '[ $rc -eq 64 ] && grep -q "profile \"r\": cache_password_file .*mode 0640 .*chmod 600" <<<"$out"'
chmod 600 "$TMP/redis.secret"
out=$("$CBV" check-config -c "$TMP/redis.conf" 2>&1)
rc=$?
DETAIL="rc=$rc $out"
check "check-config: a 0600 password file is fine, and the secret is not shown" \
	eval '[ $rc -eq 0 ] && ! grep -q hunter2 <<<"$out"'
rm -f "$TMP/redis.secret"
out=$("$CBV" check-config -c "$TMP/redis.conf" 2>&1)
rc=$?
DETAIL="rc=$rc $out"
check "check-config: a missing password file is an error" \
	eval '[ $rc -eq 64 ] && grep -q "redis.secret: No such file" <<<"$out"'
printf 'smtp_cbv "x" {\n  colour = blue\n}\n' > "$TMP/bad2.conf"
out=$("${V[@]/$TMP\/cbv.conf/$TMP/bad2.conf}" alice@exim.test 2>&1)
rc=$?
if [ $rc -eq 64 ] && grep -q "colour" <<<"$out"; then ok "unknown key refused"; else bad "unknown key refused" "rc=$rc $out"; fi

# Issue 11.1: an MX that answers 220 to STARTTLS and closes made the tool
# die of SIGPIPE (exit 141, no output).  Run with SIGPIPE at its default.
expect_run "STARTTLS 220 then close: plain retry, no SIGPIPE" 0 '^x@tlsclose\.test pass accepted 250 ' -- env --default-signal=PIPE "${V[@]}" x@tlsclose.test
expect_run "STARTTLS 220 then close, TLS required: tls_failed" 3 '^x@tlsclose\.test error tls_failed ' -- env --default-signal=PIPE "${V[@]}" -p strict x@tlsclose.test

# Issue 11.2: international domain names (A-labels to DNS and RCPT).
expect_run "IDN: alice@bücher.test passes" 0 '^alice@bücher\.test pass accepted 250 ' -- "${V[@]}" alice@bücher.test
expect_run "IDN: NXDOMAIN names the domain readably" 1 '^x@nix-ü\.test fail no_domain 550 5\.1\.2 domain nix-ü\.test \(xn--nix--3ra\.test\) does not exist$' -- "${V[@]}" x@nix-ü.test
expect_run "IDN: disallowed code point is bad_syntax" 1 '^x@☃\.test fail bad_syntax 553 5\.1\.3 .*invalid international domain name' -- "${V[@]}" x@☃.test
expect_run "IDN: UTF-8 local part via SMTPUTF8" 0 '^jürgen@bücher\.test pass accepted' -- "${V[@]}" jürgen@bücher.test
expect_run "IDN: IDN sender needs no SMTPUTF8" 0 'pass accepted' -- "${V[@]}" -f probe@bücher.test alice@fast.test
out=$("${V[@]}" -v alice@bücher.test 2>&1 >/dev/null)
if grep -q '^>>> RCPT TO:<alice@xn--bcher-kva.test>$' <<<"$out" && ! grep -q 'SMTPUTF8$' <<<"$(grep '^>>> MAIL' <<<"$out")"; then
	ok "IDN: RCPT carries the A-label, MAIL has no SMTPUTF8"
else
	bad "IDN: RCPT carries the A-label, MAIL has no SMTPUTF8" "$(grep '^>>>' <<<"$out")"
fi
out=$("${V[@]}" --json x@nix-ü.test 2>/dev/null)
if python3 -c 'import json,sys; o=json.loads(sys.argv[1]); assert "nix-\u00fc.test (xn--nix--3ra.test)" in o["message"], o' "$out" 2>"$TMP/err"; then
	ok "IDN: --json message keeps the UTF-8 name"
else
	bad "IDN: --json message keeps the UTF-8 name" "$(cat "$TMP/err")"
fi

# tls_verify with an address literal: no name to check, so the certificate
# must name the address (the rig's names 127.0.0.10 but not 127.0.0.13).
V_IP=("${V[@]}" -o starttls=require -o tls_verify=yes -o "ca_dir=$CBV_RIG_CA_DIR")
expect_run "tls_verify, address literal not in the certificate: tls_failed" 3 \
	'^alice@\[127\.0\.0\.13\] error tls_failed 454 4\.7\.5 .*IP address mismatch' -- "${V_IP[@]}" 'alice@[127.0.0.13]'
out=$("${V_IP[@]}" -v 'alice@[127.0.0.10]' 2>&1)
if grep -q '^>>> MAIL FROM' <<<"$out" && ! grep -q 'tls_failed' <<<"$out"; then
	ok "tls_verify, address literal in the certificate: TLS up, MAIL sent"
else
	bad "tls_verify, address literal in the certificate: TLS up, MAIL sent" "$out"
fi

summary cli
