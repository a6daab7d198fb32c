#!/bin/bash
# cbv.so end to end: a real Exim with exim-conf's macros, ACLs and
# snippets, driven over `exim -bs` and as a loopback daemon with swaks.
# Asserts SMTP reply codes, $acl_m_* variables (logged by the DATA ACL and
# added as an X-CBV header), mainlog and paniclog lines, and that hostile
# remote text is never expanded.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
skip_if_sanitized
front_setup
trap front_cleanup EXIT

# mail FROM TO [-Dmacro...]: one -bs message; replies in $out.
mail() {
	local from=$1 to=$2
	shift 2
	out=$(bs_session "$@" -- "HELO client.test" "MAIL FROM:<$from>" "RCPT TO:<$to>" \
		DATA "Subject: cbv test" "" "body" . QUIT)
}
queued() { find "$T/spool/input" -name '*-H' 2>/dev/null | wc -l; }

# ---- sender verification at MAIL (cbv_mail.acl) ----
mark
mail alice@exim.test bob@exim.test -DFRONT_MAIL=1
expect_text "MAIL pass: 250 and message accepted" "$out" '^250 OK id='
l=$(newlog)
expect_text "MAIL pass: one mainlog line with address, sender, status, reason, host, ip, elapsed" "$l" \
	'cbv: <alice@exim\.test> sender=<> pass/accepted host=mx\.exim\.test \[(127\.0\.0\.10|\[::1\]):[0-9]+\] elapsed=[0-9]+ms cache=off: 250 '
expect_text "MAIL pass: \$acl_m_smtp_cbv_result and \$acl_m_last_poll_* set" "$l" \
	'X-CBV result=<pass> sender=<pass> rcpt=<> reason=<accepted> host=<mx\.exim\.test> ip=<[^>]+> greeting=<220 mx\.exim\.test ESMTP Exim [^>]*> sent=<RCPT TO:<alice@exim\.test>>'
h=$(cat "$T"/spool/input/*-H 2>/dev/null)
expect_text "MAIL pass: X-CBV header added from the ACL variables" "$h" 'X-CBV: result=<pass> host=<mx\.exim\.test> greeting=<220 mx\.exim\.test'
n=$(grep -c 'cbv: <alice@exim.test>' <<<"$l")
check "MAIL pass: exactly one verification line" test "$n" -eq 1

mark
mail nobody@exim.test bob@exim.test -DFRONT_MAIL=1
expect_text "MAIL fail: 550 with the remote's reply" "$out" $'^550-5\\.1\\.7 <nobody@exim\\.test>: sender verification failed\n550 5\\.1\\.7 550 5\\.1\\.1 <nobody@exim\\.test>: no such user here'
expect_text "MAIL fail: mainlog verification and rejection lines" "$(newlog)" 'fail/mailbox_unknown.*'
expect_text "MAIL fail: rejection logged with the reply" "$(newlog)" 'rejected MAIL <nobody@exim\.test>: cbv: sender <nobody@exim\.test> fail: 550 5\.1\.1'

mark
mail grey@grey.test bob@exim.test -DFRONT_MAIL=1
expect_text "MAIL transient: 451 (greylisted at both MXes)" "$out" $'^451-4\\.4\\.3 <grey@grey\\.test>: sender verification deferred.*\n451 4\\.4\\.3 451 4\\.7\\.1 greylisted'
expect_text "MAIL transient: mainlog" "$(newlog)" 'cbv: <grey@grey\.test> sender=<> transient/greylisted host=mx2\.grey\.test'

mark
mail x@policy.test bob@exim.test -DFRONT_MAIL=1
expect_text "MAIL error (default policy): accepted" "$out" '^250 OK id='
expect_text "MAIL error (default policy): logged as accepted" "$(newlog)" 'cbv: sender <x@policy\.test> error \(accepted\): 550 5\.7\.1'
expect_text "MAIL error: \$acl_m_* show error/policy_refused" "$(newlog)" 'X-CBV result=<error> sender=<error> rcpt=<> reason=<policy_refused> host=<mx\.policy\.test>'
mail x@policy.test bob@exim.test -DFRONT_MAIL=1 -DCBV_ERROR_DEFER=1
expect_text "MAIL error with CBV_ERROR_DEFER: 451" "$out" '^451 4\.4\.3 <x@policy\.test>: sender verification impossible'
mail x@policy.test bob@exim.test -DFRONT_MAIL=1 -DCBV_ERROR_DENY=1
expect_text "MAIL error with CBV_ERROR_DENY: 550" "$out" $'^550-5\\.7\\.1 <x@policy\\.test>: sender verification impossible\n550 5\\.7\\.1 550 5\\.7\\.1 Client host blocked'

mark
mail x@tarpit.test bob@exim.test -DFRONT_MAIL=1 "-DCBV_SENDER_OPTIONS=timeout=1s"
expect_text "MAIL tarpit with timeout=1s: 451" "$out" '^451-4\.4\.3 <x@tarpit\.test>'
expect_text "MAIL tarpit: transient/timeout logged" "$(newlog)" 'cbv: <x@tarpit\.test> sender=<> transient/timeout'

mail '' bob@exim.test -DFRONT_MAIL=1
expect_text "null sender is not verified" "$out" '^250 OK id='

# ---- recipient + sender verification at RCPT (cbv_rcpt.acl) ----
mark
out=$(bs_session -DFRONT_RCPT=1 -- "HELO client.test" "MAIL FROM:<alice@exim.test>" \
	"RCPT TO:<bob@exim.test>" "RCPT TO:<nobody@exim.test>" "RCPT TO:<grey@exim.test>" \
	"RCPT TO:<x@policy.test>" DATA "Subject: rcpt" "" body . QUIT)
expect_text "RCPT pass: 250 for bob" "$out" $'250 OK\n250 Accepted'
expect_text "RCPT fail: 550 with the remote's reply" "$out" $'550-5\\.1\\.1 <nobody@exim\\.test>: recipient verification failed\n550 5\\.1\\.1 550 5\\.1\\.1 <nobody@exim\\.test>: no such user here'
expect_text "RCPT transient: 451" "$out" \
	$'451-4\\.4\\.3 <grey@exim\\.test>: recipient verification deferred, try again\n451-4\\.4\\.3 later\n451 4\\.4\\.3 451 4\\.7\\.1 greylisted'
expect_text "RCPT error: accepted by default policy" "$out" $'451 4\\.4\\.3 451 4\\.7\\.1 greylisted, try again later\n250 Accepted'
expect_text "RCPT: message accepted for the good recipients" "$out" '^250 OK id='
l=$(newlog)
n=$(grep -c 'cbv: <alice@exim.test> sender=<>' <<<"$l")
check "RCPT: sender verified once per message, not per recipient" test "$n" -eq 1
expect_text "RCPT: \$acl_m_cbv_rcpt_verdict and \$acl_m_smtp_cbv_result from the last verification" "$l" \
	'X-CBV result=<error> sender=<pass> rcpt=<error> reason=<policy_refused>'

mark
out=$(bs_session -DFRONT_RCPT=1 "-DCBV_RECIPIENT_MAILFROM=\$sender_address" -- "HELO client.test" \
	"MAIL FROM:<alice@exim.test>" "RCPT TO:<bob@exim.test>" QUIT)
expect_text "per-call sender override: probe sent with the real sender" "$(newlog)" \
	'cbv: <bob@exim\.test> sender=<alice@exim\.test> pass/accepted'

mark
mail alice@exim.test bob@exim.test -DFRONT_MAIL=1 -DFRONT_RCPT=1
expect_text "MAIL and RCPT snippets together: accepted" "$out" '^250 OK id='
expect_text "MAIL and RCPT snippets together: recipient passes, sender verified once" "$(newlog)" \
	'X-CBV result=<pass> sender=<pass> rcpt=<pass>'

# ---- hostile greeting: literal, never expanded (vars_acl on and off) ----
EVIL='evil.test ${run{/bin/touch '"$T"'/pwned}} $sender_address $primary_hostname ${readfile{/etc/passwd}}'
evil_start "$EVIL" || bad "evilsmtp start"
for mode in on off; do
	defs=(-DFRONT_MAIL=1)
	[[ $mode == off ]] && defs+=(-DCBV_NO_SETVARS=1)
	mark
	mail "x@[$EVIL_IP]" bob@exim.test "${defs[@]}"
	expect_text "evil greeting (vars_acl $mode): verified and accepted" "$out" '^250 OK id='
	l=$(newlog)
	lit='greeting=<220 evil\.test \$\{run\{/bin/touch [^}]*/pwned\}\} \$sender_address \$primary_hostname \$\{readfile\{/etc/passwd\}\}>'
	expect_text "evil greeting (vars_acl $mode): last_poll returns it literally" "$l" "X-CBV-LP status=<pass> $lit"
	if [[ $mode == on ]]; then
		expect_text "evil greeting (vars_acl on): \$acl_m_last_poll_greeting literal" "$l" "X-CBV result=<pass>.* $lit"
	else
		expect_text "evil greeting (vars_acl off): ACL variables not set" "$l" 'X-CBV result=<> sender=<pass> rcpt=<> reason=<> host=<> ip=<> greeting=<>'
	fi
	check "evil greeting (vars_acl $mode): \${run} never ran" test ! -e "$T/pwned"
	if matches 'root:x:0' "$l" || matches 'front\.cbv\.test x@' "$l"; then
		bad "evil greeting (vars_acl $mode): nothing expanded" "$l"
	else
		ok "evil greeting (vars_acl $mode): nothing expanded"
	fi
done

# CR/LF in the sender: bad syntax, and not a byte to the remote.
: >"$T/evil.log"
mark
mail "x@[$EVIL_IP]" bob@exim.test -DFRONT_MAIL=1 "-DCBV_SENDER_MAILFROM=\${sg{a#RSET@exim.test}{#}{\\r\\n}}"
expect_text "CR/LF in the probe sender: error/bad_syntax" "$(newlog)" 'cbv: <x@\[127\.0\.0\.62\]> sender=<a\?\?RSET@exim\.test> error/bad_syntax'
DETAIL=$(cat "$T/evil.log")
check "CR/LF in the probe sender: no connection, no bytes sent" test ! -s "$T/evil.log"
evil_stop

# ---- broken cbv.conf: 451, panic log, nothing accepted or lost ----
printf 'smtp_cbv "default" {\n  timeout = 30 seconds\n}\n' >"$T/broken.conf"
chmod 644 "$T/broken.conf"
before=$(queued)
mark
mail alice@exim.test bob@exim.test -DFRONT_MAIL=1 -DFRONT_CONF="$T/broken.conf"
expect_text "broken cbv.conf: MAIL gets 451" "$out" '^451 Temporary local problem'
check "broken cbv.conf: nothing queued" test "$(queued)" -eq "$before"
p=$(cat "$T/log/paniclog" 2>/dev/null)
expect_text "broken cbv.conf: panic log names file:line:col" "$p" "cbv: smtp_callback_verify: config $T/broken\\.conf:2:[0-9]+: "
mail nobody@exim.test bob@exim.test -DFRONT_MAIL=1 -DFRONT_CONF="$T/broken.conf"
expect_text "broken cbv.conf: a bad sender gets 451 too, not 550 (retried later)" "$out" '^451 '

# ---- the daemon, driven by swaks ----
if front_daemon_start -DFRONT_RCPT=1; then
	sw() { out=$(swaks --server "$FRONT_IP" --port "$CBV_RIG_PORT" --helo client.test \
		--timeout 30 --from "$1" --to "$2" 2>&1); src=$?; }
	mark
	sw alice@exim.test bob@exim.test
	expect_text "daemon: pass sender, pass recipient: queued" "$out" '<-  250 OK id='
	sw nobody@exim.test bob@exim.test
	expect_text "daemon: fail sender: 550 at RCPT" "$out" '<\*\* 550 5\.1\.7 550 5\.1\.1 <nobody@exim\.test>'
	sw grey@grey.test bob@exim.test
	expect_text "daemon: transient sender: 451" "$out" '<\*\* 451 4\.4\.3 451 4\.7\.1 greylisted'
	sw alice@exim.test nobody@exim.test
	expect_text "daemon: fail recipient: 550" "$out" '<\*\* 550 5\.1\.1 550 5\.1\.1 <nobody@exim\.test>'
	sw alice@exim.test x@policy.test
	expect_text "daemon: error recipient: accepted" "$out" '<-  250 OK id='
	l=$(newlog)
	n=$(grep -c ' cbv: <' <<<"$l")
	check "daemon: one mainlog line per verification (9: the sender is not verified after a failed recipient)" test "$n" -eq 9
	DETAIL=$l
	expect_text "daemon: connection processes log X-CBV variables" "$l" 'X-CBV result=<pass> sender=<pass> rcpt=<pass>'
	front_daemon_stop
else
	bad "front daemon start" "$(cat "$T/log/paniclog" 2>/dev/null)"
fi

# ---- the daemon with preload: cbv.so set up once in the daemon ----
if front_daemon_start -DFRONT_RCPT=1 -DFRONT_PRELOAD=1; then
	mark
	tls0=$(grep -c 'X=TLS1\.3.* rejected RCPT <nobody@exim\.test>' "$CBV_RIG_DIR/log/mainlog")
	sw alice@exim.test bob@exim.test
	expect_text "preload daemon: pass sender, pass recipient: queued" "$out" '<-  250 OK id='
	sw alice@exim.test nobody@exim.test
	expect_text "preload daemon: fail recipient: 550" "$out" '<\*\* 550 5\.1\.1 550 5\.1\.1 <nobody@exim\.test>'
	l=$(newlog)
	DETAIL=$l
	check "preload daemon: cbv.so loaded once, by the daemon, for both connections" \
		test "$(grep -c 'cbv\.so .* loaded' <<<"$l")" -eq 1
	tls1=$(grep -c 'X=TLS1\.3.* rejected RCPT <nobody@exim\.test>' "$CBV_RIG_DIR/log/mainlog")
	check "preload daemon: the failing verification ran over STARTTLS (the MX's log)" test "$tls1" -gt "$tls0"
	front_daemon_stop
else
	bad "front daemon start with preload" "$(cat "$T/log/paniclog" 2>/dev/null)"
fi

p=$(grep -v 'lost privilege for using -C option\|broken\.conf' "$T/log/paniclog" 2>/dev/null)
DETAIL=$p
check "no other panic log lines" test -z "$p"
summary
