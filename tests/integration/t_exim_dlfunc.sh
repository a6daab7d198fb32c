#!/bin/bash
# cbv.so inside a real Exim, through `exim -be` expansions: every verdict
# class, last_poll (fields, quoting, taint), callout names, options,
# config file handling and misuse (ERROR, never a crash).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
skip_if_sanitized
front_setup
trap front_cleanup EXIT

V="\${dlfunc{$SO}{smtp_callback_verify}"
LP="\${dlfunc{$SO}{last_poll}"
CO="\${dlfunc{$SO}{callout}"
CONF="config=$T/cbv.conf"

# ---- verdicts ----
expect_verdict() { # NAME ADDRESS WANT [REASON] [OPTIONS]
	local opts=${5:-$CONF}
	be "$V{$2}{}{$opts}}/$LP{reason}}/$LP{status}}"
	if [[ $rc -eq 0 && $out == "$3/${4:-}"* && $out == *"/$3" ]]; then ok "$1"; else bad "$1" "rc=$rc out=$out err=$err"; fi
}
expect_verdict "pass: known user at the Exim MX" alice@exim.test pass accepted
expect_verdict "fail: unknown user (550 5.1.1)" nobody@exim.test fail mailbox_unknown
expect_verdict "transient: greylisted user, two MXes" grey@grey.test transient greylisted
expect_verdict "error: RCPT 5.7.1 policy refusal" x@policy.test error policy_refused
expect_verdict "fail: NXDOMAIN" x@nowhere.test fail no_domain
expect_verdict "fail: null MX" x@nullmx.test fail null_mx
expect_verdict "transient: every MX dead" x@dead.test transient
expect_verdict "pass: fast MTA" x@fast.test pass accepted
expect_verdict "error: null sender refused" x@nullsender.test error sender_refused
expect_verdict "transient: tarpit bounded by timeout=1s" x@tarpit.test transient "" "$CONF timeout=1s"
expect_verdict "pass: second MX after a dead first" bob@two.test pass accepted

# A config= file must exist (issue 11.3): ERROR naming it, not the built-in
# defaults.  Only the default path may be missing.
be "$V{alice@[127.0.0.10]}{}{config=$T/none.conf}}/$LP{reason}}"
DETAIL="rc=$rc out=$out err=$err"
check "missing config= file: ERROR naming the path" \
	eval '[[ $rc -ne 0 ]] && grep -q "$T/none.conf: No such file or directory" <<<"$out$err"'

# ---- last_poll ----
be "$V{nobody@exim.test}{}{$CONF}}|$LP{message}}|$LP{host}}|$LP{ip}}|$LP{sent}}|$LP{ecode}}|$LP{cache}}"
DETAIL="out=$out err=$err"
check "last_poll fields" test "$out" = "fail|550 5.1.1 <nobody@exim.test>: no such user here|mx.exim.test|127.0.0.10:$CBV_RIG_PORT|RCPT TO:<nobody@exim.test>|5.1.1|0" \
	-o "$out" = "fail|550 5.1.1 <nobody@exim.test>: no such user here|mx.exim.test|[::1]:$CBV_RIG_PORT|RCPT TO:<nobody@exim.test>|5.1.1|0"

be "$V{alice@exim.test}{}{$CONF}}|$LP{helo}}"
DETAIL="out=$out"
check "default HELO is \$primary_hostname" grep -q 'Hello front\.cbv\.test' <<<"$out"
be "$V{alice@exim.test}{}{$CONF helo=probe.cbv.test}}|$LP{helo}}"
DETAIL="out=$out"
check "helo= option overrides" grep -q 'Hello probe\.cbv\.test' <<<"$out"

be "$V{alice@exim.test}{}{$CONF}}|\${extract{host}{$LP}}}|\${extract{status}{$LP}}}|\${extract{helo}{$LP}}}"
DETAIL="out=$out err=$err"
check "last_poll without FIELD feeds \${extract}" grep -Eq '^pass\|mx\.exim\.test\|pass\|250-mx\.exim\.test Hello' <<<"$out"
be "$V{alice@exim.test}{}{$CONF}}|$LP}"
DETAIL="out=$out"
check "last_poll quoting: newlines as \\x0a, key=\"value\"" \
	grep -Eq '^pass\|status="pass" reason="accepted" .* helo="250-mx\.exim\.test Hello [^"]*\\x0a250-' <<<"$out"
n=$(grep -o '[a-z]*="' <<<"${out#*|}" | tr '\n' ' ')
DETAIL="keys: $n"
check "last_poll lists all 14 fields" test "$n" = 'status=" reason=" message=" host=" ip=" greeting=" helo=" sent=" recv=" ecode=" tls=" elapsed=" cache=" age=" '

# ---- several addresses in one call (issue 9.3): one word each, in order ----
be "$V{alice@exim.test nobody@exim.test grey@exim.test}{}{$CONF}}|$LP{status}}|$LP{sent}{1}}|$LP{sent}{2}}|$LP{reason}{2}}|$LP{status}{3}}|$LP{status}{4}}|"
DETAIL="rc=$rc out=$out err=$err"
check "several addresses: one word each; last_poll the last's, {FIELD}{N} address N's" test "$out" = \
	"pass fail transient|transient|RCPT TO:<alice@exim.test>|RCPT TO:<nobody@exim.test>|mailbox_unknown|transient||"
be "$V{alice@exim.test  x@nullmx.test	x@fast.test bad@@x unknown1@fast.test}{}{$CONF}}"
DETAIL="rc=$rc out=$out err=$err"
check "several domains, one without a callout, bad syntax among them" test "$out" = "pass fail pass fail fail"
be "$V{nobody@exim.test}{}{$CONF}}|$LP{status}{1}}|$LP{status}{2}}|"
DETAIL="rc=$rc out=$out err=$err"
check "after a single address: {FIELD}{1} is it, {FIELD}{2} empty" test "$out" = "fail|fail||"
be "$V{\"no body\"@exim.test}{}{$CONF}}|$LP{sent}}"
DETAIL="rc=$rc out=$out err=$err"
check "a quoted local part with a space stays one address" test "$out" = 'fail|RCPT TO:<"no body"@exim.test>'
many=$(printf 'a%d@exim.test ' $(seq 1 33))
be_error "more than 32 addresses" "$V{$many}{}{$CONF}}" 'more than 32 addresses'
be_error "last_poll N not a number" "$LP{status}{host}}" 'N must be 1 to 32'

# Taint: remote text must be refused as a file name.
be "$V{alice@exim.test}{}{$CONF}}\${lookup{x}lsearch{$LP{greeting}}}}"
DETAIL="rc=$rc out=$out err=$err"
check "remote greeting is tainted: refused as lookup file name" grep -q 'Tainted filename' <<<"$out$err"
: >"$T/pass"
chmod 644 "$T/pass"
be "$V{alice@exim.test}{}{$CONF}}\${lookup{x}lsearch{$T/$LP{status}}}{y}{n}}"
DETAIL="rc=$rc out=$out err=$err"
check "verdict word is clean (usable in a file name)" test "$rc" -eq 0 -a "$out" = passn
be "$V{alice@exim.test}{}{$CONF}}\${lookup{x}lsearch{$LP}}}"
DETAIL="rc=$rc out=$out err=$err"
check "all-fields last_poll is tainted" grep -q 'Tainted filename' <<<"$out$err"

# ---- callout (mailfromd names) ----
be "$CO{alice@exim.test}{}{$CONF}} $CO{nobody@exim.test}{}{$CONF}} $CO{grey@exim.test}{}{$CONF}} $CO{x@policy.test}{}{$CONF}}"
DETAIL="out=$out err=$err"
check "callout: success not_found temp_failure failure" test "$out" = "success not_found temp_failure failure"

# ---- sender, options, profiles, map ----
be "$V{alice@exim.test}{bob@exim.test}{$CONF}}|$LP{status}}"
DETAIL="out=$out"
check "sender argument is used for MAIL FROM" grep -q '^pass' <<<"$out"
grep -q 'sender=<bob@exim.test> pass/accepted' "$T/be.err" "$T/log/mainlog" 2>/dev/null
check "mainlog line names the sender" test $? -eq 0
be "$V{alice@exim.test}{<>}{$CONF mailfrom=bob@exim.test}}"
check "sender <> is the null sender" test "$out" = pass
be "$V{alice@exim.test}{}{$CONF timeout=\"2s\" max_hosts=1}}"
DETAIL="out=$out err=$err"
check "quoted option values" test "$out" = pass
be "$V{x@tls.test}{}{$CONF starttls=never}}|$LP{reason}}"
DETAIL="out=$out err=$err"
check "option starttls=never: 530 before MAIL gives error/tls_required" test "$out" = "error|tls_required"
be "$V{alice@exim.test}{}{$CONF profile=quick}}"
check "profile= selects a profile" test "$out" = pass
be "$V{alice@exim.mapped.example}{}{$CONF profile=mapped}}|$LP{sent}}"
DETAIL="out=$out err=$err"
check "regex map: alice@exim.mapped.example -> exim.test" test "$out" = "pass|RCPT TO:<alice@exim.test>"

# ---- CR/LF: bad syntax, nothing sent ----
evil_start "evil.test ESMTP" || bad "evilsmtp start"
be "$V{alice\\r\\nRSET@[$EVIL_IP]}{}{$CONF}}/$LP{reason}}"
# -be does not interpret \r\n; use ${sg} to make real CR LF.
be "$V{\${sg{alice#RSET@[$EVIL_IP]}{#}{\\r\\n}}}{}{$CONF}}/$LP{reason}}"
DETAIL="out=$out err=$err"
check "address with CR/LF: fail/bad_syntax" test "$out" = fail/bad_syntax
be "$V{alice@[$EVIL_IP]}{\${sg{bob#RCPT TO:<x@y>@exim.test}{#}{\\r\\n}}}{$CONF}}/$LP{reason}}"
DETAIL="out=$out err=$err"
check "sender with CR/LF: error/bad_syntax" test "$out" = error/bad_syntax
DETAIL=$(cat "$T/evil.log")
check "CR/LF: no connection made, no bytes sent" test ! -s "$T/evil.log"
# With the built-in defaults plus these options the call would reach evilsmtp.
be "$V{alice@[$EVIL_IP]}{}{config=/nonexistent/cbv.conf deny_networks= port=$CBV_RIG_PORT}}"
DETAIL="rc=$rc out=$out err=$err log=$(cat "$T/evil.log")"
check "config=/nonexistent/cbv.conf: ERROR naming the path, nothing sent" \
	eval '[[ $rc -ne 0 ]] && grep -q "/nonexistent/cbv.conf: No such file or directory" <<<"$out$err" && [[ ! -s $T/evil.log ]]'
be "$V{alice@[$EVIL_IP]}{}{$CONF}}"
DETAIL="out=$out log=$(cat "$T/evil.log")"
check "control: address literal reaches the scripted server" grep -q '^C: RCPT TO:<alice@\[127.0.0.62\]>' "$T/evil.log"
evil_stop

# ---- misuse: ERROR with a message, never a crash ----
be_error "smtp_callback_verify with 0 arguments" "\${dlfunc{$SO}{smtp_callback_verify}}" 'expects 1 to 3 arguments.*got 0'
be_error "smtp_callback_verify with 4 arguments" "$V{a@b.test}{}{}{x}}" 'expects 1 to 3 arguments.*got 4'
be_error "smtp_callback_verify with 7 arguments" "$V{1}{2}{3}{4}{5}{6}{7}}" 'got 7'
be_error "last_poll with 3 arguments" "$LP{status}{1}{x}}" 'expects 0 to 2 arguments'
be_error "last_poll unknown field" "$LP{password}}" 'unknown field "password"'
be_error "callout with 0 arguments" "\${dlfunc{$SO}{callout}}" 'callout: expects 1 to 3'
be_error "unknown option key" "$V{a@exim.test}{}{$CONF colour=blue}}" 'bad OPTIONS: .*colour'
be_expect "preload: the per-process set-up, yields nothing" "\${dlfunc{$SO}{preload}{$CONF}}" ""
be_error "preload with 2 arguments" "\${dlfunc{$SO}{preload}{$CONF}{x}}" 'preload: expects 0 or 1 argument'
be_error "preload: a broken OPTIONS is an ERROR" "\${dlfunc{$SO}{preload}{$CONF colour=blue}}" 'bad OPTIONS: .*colour'
be_error "bad option value" "$V{a@exim.test}{}{$CONF timeout=forever}}" 'bad OPTIONS: .*timeout'
be_error "option syntax error" "$V{a@exim.test}{}{$CONF =x}}" 'bad OPTIONS: expected key=value'
be_error "unterminated quote" "$V{a@exim.test}{}{$CONF helo=\"x}}" 'unterminated quote'
be_error "unknown profile" "$V{a@exim.test}{}{$CONF profile=nope}}" 'no profile "nope"'
be_error "relative config path" "$V{a@exim.test}{}{config=cbv.conf}}" 'absolute path'
be_error "bad vars_acl name" "$V{a@exim.test}{}{$CONF vars_acl=\\\$x}}" 'vars_acl'
printf 'smtp_cbv "default" {\n  port = 25\n  colour = blue\n}\n' >"$T/broken.conf"
chmod 644 "$T/broken.conf"
be_error "broken config: ERROR naming file:line:col" "$V{a@exim.test}{}{config=$T/broken.conf}}" "$T/broken\\.conf:3:[0-9]+: .*colour"

# ---- config re-read when the file changes (one process) ----
# ${run} runs as Debian-exim: the file lives in a directory it owns.
mkdir -p "$T/live"
cp "$T/cbv.conf" "$T/live/cbv.conf"
chown -R Debian-exim:Debian-exim "$T/live"
LIVE="config=$T/live/cbv.conf"
be "$V{alice@exim.test}{}{$LIVE}}\${run{/bin/sed -i s/port.=.$CBV_RIG_PORT/port=9/ $T/live/cbv.conf}{}{}}$V{alice@exim.test}{}{$LIVE}}"
DETAIL="out=$out err=$err"
check "config change is picked up within one process" test "$out" = passtransient
be "$V{alice@exim.test}{}{$LIVE}}$V{alice@exim.test}{}{$LIVE}}"
DETAIL="out=$out err=$err"
check "unchanged config: consistent answers" test "$out" = transienttransient

# ---- international domain names (issue 11.2) ----
be "$V{alice@bücher.test}{}{$CONF}}|$LP{reason}}|$LP{sent}}"
DETAIL="rc=$rc out=$out err=$err"
check "IDN: alice@bücher.test passes via its A-label domain" test "$out" = "pass|accepted|RCPT TO:<alice@xn--bcher-kva.test>"
be "$V{jürgen@bücher.test}{}{$CONF}}|$LP{sent}}"
DETAIL="rc=$rc out=$out err=$err"
check "IDN: UTF-8 local part goes out whole in UTF-8 (SMTPUTF8)" test "$out" = "pass|RCPT TO:<jürgen@bücher.test>"
be "$V{x@nix-ü.test}{}{$CONF}}|$LP{message}}"
DETAIL="rc=$rc out=$out err=$err"
check "IDN: message names the domain readably" test "$out" = "fail|550 5.1.2 domain nix-ü.test (xn--nix--3ra.test) does not exist"
be "$V{x@☃.test}{}{$CONF}}|$LP{reason}}"
DETAIL="rc=$rc out=$out err=$err"
check "IDN: disallowed code point is fail/bad_syntax" test "$out" = "fail|bad_syntax"

# ---- tainted OPTIONS are refused (issue 11.13) ----
# last_poll's remote text (here the MX name, "mx.exim.test") is tainted:
# OPTIONS built from it stand for OPTIONS built from message data.
TAINT_MSG='OPTIONS are tainted .*pass the sender as the SENDER argument'
be "$V{alice@exim.test}{}{$CONF}}$V{alice@exim.test}{}{$CONF helo=$LP{host}}}}"
DETAIL="rc=$rc out=$out err=$err"
check "tainted OPTIONS: ERROR saying to use the SENDER argument" \
	eval '[[ $rc -ne 0 ]] && grep -Eq "$TAINT_MSG" <<<"$out$err"'
be "$V{alice@exim.test}{}{$CONF}}$V{alice@exim.test}{}{$CONF helo=\${substr_0_2:$LP{host}}}.test}}"
DETAIL="rc=$rc out=$out err=$err"
check "OPTIONS derived from tainted data (\${substr}) are tainted too" \
	eval '[[ $rc -ne 0 ]] && grep -Eq "$TAINT_MSG" <<<"$out$err"'
be "$V{alice@exim.test}{}{$CONF}}\${dlfunc{$SO}{callout_open}{unix:///nonexistent}{helo=\${substr_0_2:$LP{host}}}.test}}"
DETAIL="rc=$rc out=$out err=$err"
check "tainted OPTIONS to callout_open: ERROR" \
	eval '[[ $rc -ne 0 ]] && grep -Eq "$TAINT_MSG" <<<"$out$err"'
be "$V{alice@exim.test}{}{$CONF}}$V{alice@exim.test}{}{$CONF \${if eq{$LP{host}}}{mx.exim.test}{helo=probe.cbv.test}{}}}}|$LP{helo}}"
DETAIL="rc=$rc out=$out err=$err"
check "clean OPTIONS chosen by a condition on tainted data still work" \
	eval '[[ $rc -eq 0 && $out == passpass\|*"Hello probe.cbv.test"* ]]'
be "$V{alice@exim.test}{}{$CONF}}$V{\${substr_0_2:$LP{host}}}@fast.test}{x@\${substr_0_2:$LP{host}}}.test}{$CONF}}"
DETAIL="rc=$rc out=$out err=$err"
check "tainted ADDRESS and SENDER are allowed (checked as addresses)" test "$rc" -eq 0 -a "$out" = passpass
be_many=
for i in 1 2 3 4; do be_many+="$V{alice@exim.test}{}{$CONF helo=probe$i.cbv.test}}"; done
be "$be_many"
DETAIL="rc=$rc out=$out err=$err"
check "clean OPTIONS: never taken for tainted, call after call" test "$out" = passpasspasspass

# The same through an SMTP session: OPTIONS from the sender's local part.
mark_panic=$( (wc -l <"$T/log/paniclog") 2>/dev/null || echo 0)
out=$(bs_session -DFRONT_MAIL=1 "-DCBV_SENDER_OPTIONS=helo=\$sender_address_local_part.test" -- \
	"HELO client.test" "MAIL FROM:<alice@exim.test>" QUIT)
panic=$(tail -n +"$((mark_panic + 1))" "$T/log/paniclog" 2>/dev/null)
DETAIL="out=$out panic=$panic"
check "SMTP: OPTIONS from \$sender_address_local_part: 451 and a panic-log line saying why" \
	eval 'grep -q "^451 " <<<"$out" && grep -Eq "$TAINT_MSG" <<<"$panic"'
out=$(bs_session -DFRONT_MAIL=1 "-DCBV_SENDER_OPTIONS=\${if eq{\$sender_address_domain}{exim.test}{timeout=9s}{}}" -- \
	"HELO client.test" "MAIL FROM:<alice@exim.test>" QUIT)
DETAIL="out=$out"
check "SMTP: clean OPTIONS picked by a condition on the sender: 250" grep -q '^250 OK' <<<"$out"

summary
