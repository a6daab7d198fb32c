#!/bin/bash
# Session reuse through a real Exim: one `exim -bs` session (one Exim
# process) with several RCPTs, each verified by cbv.so at RCPT time.  The
# counting fake MTA must see one connection and one RCPT per address; the
# rig's Exim MX (STARTTLS on 127.0.0.10) one connection; every RCPT gets
# its own, right verdict; session_reuse = no gives one connection each.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
skip_if_sanitized
front_setup
trap front_cleanup EXIT

lines() { if [[ -e $1 ]]; then wc -l <"$1"; else echo 0; fi; }
conns() { lines "$CBV_RIG_DIR/conn.log"; }
rcpts() { lines "$CBV_RIG_DIR/rcpt.log"; }
# Connections the rig's Exim MX accepted (log_selector +smtp_connection).
mx_conns() { grep -c 'connection count' "$CBV_RIG_DIR/log/mainlog" 2>/dev/null; true; }

id=$$
c0=$(conns) r0=$(rcpts)
out=$(bs_session -DFRONT_RCPT=1 -- "HELO client.test" "MAIL FROM:<>" \
	"RCPT TO:<a$id@count.test>" "RCPT TO:<unknown-b$id@count.test>" \
	"RCPT TO:<c$id@count.test>" "RCPT TO:<d$id@count.test>" QUIT)
expect_text "counting MTA: pass, fail, pass, pass in one -bs session" "$out" \
	$'250 Accepted\n550-5\\.1\\.1 <unknown-b[0-9]+@count\\.test>: recipient verification failed\n550 5\\.1\\.1 550 5\\.1\\.1 No such user here\n250 Accepted\n250 Accepted'
c=$(($(conns) - c0)) r=$(($(rcpts) - r0))
DETAIL="$c connections" check "counting MTA: one connection for 4 RCPTs" test "$c" -eq 1
DETAIL="$r RCPTs" check "counting MTA: one RCPT per address" test "$r" -eq 4

# the same with session_reuse = no: one connection per RCPT
c0=$(conns)
out=$(bs_session -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=session_reuse=no" -- \
	"HELO client.test" "MAIL FROM:<>" \
	"RCPT TO:<e$id@count.test>" "RCPT TO:<unknown-f$id@count.test>" QUIT)
expect_text "session_reuse=no: pass, fail" "$out" $'250 Accepted\n550-5\\.1\\.1'
c=$(($(conns) - c0))
DETAIL="$c connections" check "session_reuse=no: a connection per RCPT" test "$c" -eq 2

# a peer that closes after the first RCPT: the next is verified afresh
c0=$(conns)
out=$(bs_session -DFRONT_RCPT=1 -- "HELO client.test" "MAIL FROM:<>" \
	"RCPT TO:<close-g$id@count.test>" "RCPT TO:<unknown-h$id@count.test>" \
	"RCPT TO:<r421-i$id@count.test>" QUIT)
expect_text "peer closed, then 421 to a reused RCPT: right verdicts" "$out" \
	$'250 Accepted\n550-5\\.1\\.1 <unknown-h[0-9]+@count\\.test>: recipient verification failed\n550 5\\.1\\.1 550 5\\.1\\.1 No such user here\n250 Accepted'
c=$(($(conns) - c0))
DETAIL="$c connections" check "peer closed, 421: fresh connections (3)" test "$c" -eq 3

# the rig's Exim MX over STARTTLS: one connection, one handshake
MXLOG=$CBV_RIG_DIR/log/mainlog
mx0=$(lines "$MXLOG")
mxnew() { tail -n +"$((mx0 + 1))" "$MXLOG"; }
mark
out=$(bs_session -DFRONT_RCPT=1 -- "HELO client.test" "MAIL FROM:<>" \
	"RCPT TO:<bob@exim.test>" "RCPT TO:<nobody@exim.test>" "RCPT TO:<alice@exim.test>" \
	"RCPT TO:<Bob@exim.test>" QUIT)
expect_text "Exim MX over STARTTLS: pass, fail, pass, pass" "$out" \
	$'250 Accepted\n550-5\\.1\\.1 <nobody@exim\\.test>: recipient verification failed\n550 5\\.1\\.1 550 5\\.1\\.1 <nobody@exim\\.test>: no such user here\n250 Accepted\n250 Accepted'
l=$(newlog)
n=$(grep -c 'cbv: <[A-Za-z]*@exim.test> sender=<> [a-z]*/[a-z_]* host=mx\.exim\.test \[127\.0\.0\.10:' <<<"$l")
DETAIL="$n lines: $l" check "Exim MX: four verifications at 127.0.0.10" test "$n" -eq 4
# the parked session got QUIT when the -bs process ended (atexit); the MX
# logs it a moment after our process has gone: wait for it, up to 5 s
for ((w = 0; w < 50; w++)); do
	mxnew | grep -q 'closed by QUIT' && break
	sleep 0.1
done
m=$(mxnew | grep -c 'connection count'; true)
DETAIL="$m connections" check "Exim MX: one connection for 4 RCPTs" test "$m" -eq 1
DETAIL="$(mxnew)" check "Exim MX: the parked session ended with QUIT" \
	grep -q 'incomplete transaction (QUIT) from <> for bob@exim.test alice@exim.test' <(mxnew)

summary
