#!/bin/bash
# The cbv command-line tool against the loopback rig: output format, JSON,
# exit codes, -o overrides, -v transcript, check-config.
set -u
B=${B:-build}
CBV="$B/cbv"
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && printf '    %s\n' "$2"; }

: "${CBV_RIG_DNS:?run inside tests/rig/rig.sh run}" "${CBV_RIG_PORT:?}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/cbv.conf" <<CONF
# rig profile: the rig's DNS and port, loopback allowed
smtp_cbv "default" {
  cache = ""
  dns_servers = "$CBV_RIG_DNS"
  port = $CBV_RIG_PORT
  deny_networks = [ ]
  helo = "verifier.test"
  timeout = 10s
}
smtp_cbv "strict" {
  cache = ""
  dns_servers = "$CBV_RIG_DNS"
  port = $CBV_RIG_PORT
  deny_networks = [ ]
  starttls = require
  timeout = 5s
}
CONF
V=("$CBV" verify -c "$TMP/cbv.conf")

# expect CASE EXIT-STATUS STDOUT-REGEX -- command...
expect() {
	local name=$1 want_rc=$2 re=$3
	shift 4
	local out rc
	out=$("$@" 2>"$TMP/err")
	rc=$?
	if [ "$rc" -ne "$want_rc" ]; then
		bad "$name" "exit $rc, want $want_rc; stdout: $out; stderr: $(head -c 500 "$TMP/err")"
	elif ! grep -Eq -- "$re" <<<"$out"; then
		bad "$name" "stdout does not match /$re/: $out"
	else
		ok "$name"
	fi
}

expect "pass exits 0" 0 '^alice@exim\.test pass accepted 250 ' -- "${V[@]}" alice@exim.test
expect "unknown user exits 1" 1 '^nobody@exim\.test fail mailbox_unknown 550 5\.1\.1 ' -- "${V[@]}" nobody@exim.test
expect "greylisted exits 2" 2 '^grey@exim\.test transient greylisted 451 ' -- "${V[@]}" grey@exim.test
expect "policy refusal exits 3" 3 '^x@policy\.test error policy_refused 550 5\.7\.1 ' -- "${V[@]}" x@policy.test
expect "null MX" 1 '^x@nullmx\.test fail null_mx 556 5\.1\.10 ' -- "${V[@]}" x@nullmx.test
expect "NXDOMAIN" 1 '^x@nowhere\.test fail no_domain ' -- "${V[@]}" x@nowhere.test
expect "fail wins over transient in exit status" 1 'grey@exim\.test transient' -- "${V[@]}" grey@exim.test nobody@exim.test
expect "transient wins over error" 2 'x@policy\.test error' -- "${V[@]}" x@policy.test grey@exim.test
expect "one line per address" 0 '^bob@exim\.test pass' -- "${V[@]}" alice@exim.test bob@exim.test
n=$("${V[@]}" alice@exim.test bob@exim.test nobody@exim.test 2>/dev/null | wc -l)
[ "$n" -eq 3 ] && ok "three addresses, three lines" || bad "three addresses, three lines" "got $n"
expect "CR/LF escaped, bad_syntax" 1 '^alice\\x0d\\x0aQUIT@exim\.test fail bad_syntax 553 5\.1\.3 ' -- "${V[@]}" $'alice\r\nQUIT@exim.test'
expect "-f sender" 0 'pass accepted' -- "${V[@]}" -f probe@exim.test x@nullsender.test
expect "-f bad sender is error" 3 'error bad_syntax' -- "${V[@]}" -f 'a b' alice@exim.test
expect "-p profile (require TLS)" 3 'error tls_required' -- "${V[@]}" -p strict alice@fast.test
expect "-o overrides the profile" 0 'pass accepted' -- "${V[@]}" -p strict -o starttls=opportunistic alice@fast.test
expect "-o deny_networks= default list refuses loopback" 3 'error forbidden_target' -- "${V[@]}" -o 'deny_networks=127.0.0.0/8 ::1/128' alice@exim.test
expect "-o timeout against the tarpit" 2 'transient timeout 451 4\.4\.' -- "${V[@]}" -o timeout=2s x@tarpit.test
expect "-o map" 0 'pass accepted' -- "${V[@]}" -o 'map=[ "mapped.test" = "exim.test" ]' alice@mapped.test
expect "unknown -o key is a usage error" 64 '^$' -- "${V[@]}" -o nosuchkey=1 alice@exim.test
expect "-o without = is a usage error" 64 '^$' -- "${V[@]}" -o timeout alice@exim.test
expect "no address is a usage error" 64 '^$' -- "${V[@]}"
expect "missing explicit config" 64 '^$' -- "$CBV" verify -c "$TMP/none.conf" alice@exim.test
expect "-c /nonexistent fails, nothing verified" 64 '^$' -- "$CBV" verify -c /nonexistent/cbv.conf alice@exim.test
grep -q '^cbv: /nonexistent/cbv.conf: No such file or directory$' "$TMP/err" && ok "-c /nonexistent: stderr names the path" ||
	bad "-c /nonexistent: stderr names the path" "$(head -c 300 "$TMP/err")"
expect "check-config -c /nonexistent fails" 64 '^$' -- "$CBV" check-config -c /nonexistent/cbv.conf
expect "unknown profile" 64 '^$' -- "${V[@]}" -p nosuch alice@exim.test

# Every rig server through the tool: exit status and status/reason.
while read -r addr want_rc want; do
	expect "rig: $addr" "$want_rc" "^$addr $want " -- "${V[@]}" -o timeout=4s "$addr"
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
expect "rig: tls.test without STARTTLS" 3 'error tls_required 530 ' -- "${V[@]}" -o starttls=never alice@tls.test
expect "rig: tls.test STARTTLS on demand" 0 'pass accepted' -- "${V[@]}" -o starttls=ondemand alice@tls.test

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
expect "check-config prints effective values" 0 'starttls = require' -- "$CBV" check-config -c "$TMP/cbv.conf"
printf 'smtp_cbv "x" {\n  port = 99999\n}\n' > "$TMP/bad.conf"
out=$("$CBV" check-config -c "$TMP/bad.conf" 2>&1)
rc=$?
if [ $rc -eq 64 ] && grep -q "bad.conf:2:" <<<"$out"; then ok "check-config names file:line"; else bad "check-config names file:line" "rc=$rc $out"; fi
printf 'smtp_cbv "x" {\n  colour = blue\n}\n' > "$TMP/bad2.conf"
out=$("${V[@]/$TMP\/cbv.conf/$TMP/bad2.conf}" alice@exim.test 2>&1)
rc=$?
if [ $rc -eq 64 ] && grep -q "colour" <<<"$out"; then ok "unknown key refused"; else bad "unknown key refused" "rc=$rc $out"; fi

# Issue 11.1: an MX that answers 220 to STARTTLS and closes made the tool
# die of SIGPIPE (exit 141, no output).  Run with SIGPIPE at its default.
expect "STARTTLS 220 then close: plain retry, no SIGPIPE" 0 '^x@tlsclose\.test pass accepted 250 ' -- env --default-signal=PIPE "${V[@]}" x@tlsclose.test
expect "STARTTLS 220 then close, TLS required: tls_failed" 3 '^x@tlsclose\.test error tls_failed ' -- env --default-signal=PIPE "${V[@]}" -p strict x@tlsclose.test

# Issue 11.2: international domain names (A-labels to DNS and RCPT).
expect "IDN: alice@bücher.test passes" 0 '^alice@bücher\.test pass accepted 250 ' -- "${V[@]}" alice@bücher.test
expect "IDN: NXDOMAIN names the domain readably" 1 '^x@nix-ü\.test fail no_domain 550 5\.1\.2 domain nix-ü\.test \(xn--nix--3ra\.test\) does not exist$' -- "${V[@]}" x@nix-ü.test
expect "IDN: disallowed code point is bad_syntax" 1 '^x@☃\.test fail bad_syntax 553 5\.1\.3 .*invalid international domain name' -- "${V[@]}" x@☃.test
expect "IDN: UTF-8 local part via SMTPUTF8" 0 '^jürgen@bücher\.test pass accepted' -- "${V[@]}" jürgen@bücher.test
expect "IDN: IDN sender needs no SMTPUTF8" 0 'pass accepted' -- "${V[@]}" -f probe@bücher.test alice@fast.test
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
expect "tls_verify, address literal not in the certificate: tls_failed" 3 \
	'^alice@\[127\.0\.0\.13\] error tls_failed 454 4\.7\.5 .*IP address mismatch' -- "${V_IP[@]}" 'alice@[127.0.0.13]'
out=$("${V_IP[@]}" -v 'alice@[127.0.0.10]' 2>&1)
if grep -q '^>>> MAIL FROM' <<<"$out" && ! grep -q 'tls_failed' <<<"$out"; then
	ok "tls_verify, address literal in the certificate: TLS up, MAIL sent"
else
	bad "tls_verify, address literal in the certificate: TLS up, MAIL sent" "$out"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
