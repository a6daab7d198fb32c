#!/bin/bash
# tests/integration/t_rig.sh - the rig itself answers as tests/rig/PLAN.md
# says: the real Exim (users, greylisting, TLS requirement, certificate) and
# the fake servers, driven with swaks, plus one DNS answer. Run inside the
# rig (tests/rig/rig.sh run -- ...). Exits 1 if any check failed.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"

need_rig
: "${CBV_RIG_CA:?run inside tests/rig/rig.sh run}"
command -v swaks >/dev/null || { echo "t_rig: swaks missing (Debian package swaks)"; exit 1; }

PORT=$CBV_RIG_PORT
TRANSCRIPT=
BAD_LINES=60 # a failure shows the swaks transcript

# expect_reply DESCRIPTION EXPECTED GOT: GOT starts with EXPECTED.
expect_reply() {
	if [[ $3 == "$2"* ]]; then
		ok "$1"
	else
		bad "$1" "expected '$2', got '$3'${TRANSCRIPT:+$'\n'$TRANSCRIPT}"
	fi
}

# swaks HOST FROM TO [swaks options...]: the transcript of a session that
# stops after RCPT (or earlier, on a refusal) in TRANSCRIPT.
session() {
	local host=$1 from=$2 to=$3
	shift 3
	TRANSCRIPT=$(swaks --server "$host" --port "$PORT" --helo client.rig.test \
		--from "$from" --to "$to" --quit-after RCPT --timeout 15 "$@" 2>&1)
}

# Reply to COMMAND ("banner", "MAIL FROM", "RCPT TO", "STARTTLS") in
# TRANSCRIPT: "CODE TEXT" of its first line, or "none".
reply_to() {
	awk -v cmd="$1" '
		function grab(line) { sub(/^<[-~*]* +/, "", line); print line; found = 1; exit }
		cmd == "banner" && /^<[-~*]/ { grab($0) }
		want && /^<[-~*]/ { grab($0) }
		/^ *[-~]> / { s = $0; sub(/^ *[-~]> /, "", s); want = (index(toupper(s), cmd) == 1) }
		END { if (!found) print "none" }' <<<"$TRANSCRIPT"
}

# ---- the real Exim ----
session 127.0.0.10 '<>' alice@exim.test
expect_reply "exim 127.0.0.10: greeting" "220 mx.exim.test ESMTP Exim 4.96" "$(reply_to banner)"
expect_reply "exim 127.0.0.10: null sender accepted" "250" "$(reply_to 'MAIL FROM')"
expect_reply "exim 127.0.0.10: alice@exim.test" "250" "$(reply_to 'RCPT TO')"
if grep -q '^<-  250-STARTTLS' <<<"$TRANSCRIPT"; then s=yes; else s=no; fi
expect_reply "exim 127.0.0.10: STARTTLS advertised" yes "$s"

session 127.0.0.10 sender@example.org nobody@exim.test
expect_reply "exim 127.0.0.10: nobody@exim.test" "550 5.1.1" "$(reply_to 'RCPT TO')"
session 127.0.0.10 '<>' grey@exim.test
expect_reply "exim 127.0.0.10: grey@exim.test" "451 4.7.1" "$(reply_to 'RCPT TO')"
session 127.0.0.10 '<>' bob@two.test
expect_reply "exim 127.0.0.10: bob@two.test" "250" "$(reply_to 'RCPT TO')"
session 127.0.0.10 '<>' postmaster@implicit.test
expect_reply "exim 127.0.0.10: postmaster@implicit.test" "250" "$(reply_to 'RCPT TO')"
session 127.0.0.10 '<>' alice@not-ours.example
expect_reply "exim 127.0.0.10: no relaying" "550" "$(reply_to 'RCPT TO')"
session ::1 '<>' alice@exim.test
expect_reply "exim [::1]: alice@exim.test" "250" "$(reply_to 'RCPT TO')"
session 127.0.0.12 '<>' grey@grey.test
expect_reply "exim 127.0.0.12: grey@grey.test" "451 4.7.1" "$(reply_to 'RCPT TO')"
session 127.0.0.12 '<>' alice@grey.test
expect_reply "exim 127.0.0.12: alice@grey.test" "250" "$(reply_to 'RCPT TO')"

session 127.0.0.11 '<>' alice@tls.test
expect_reply "exim 127.0.0.11 without TLS: MAIL" "530 5.7.0 Must issue a STARTTLS command first" \
	"$(reply_to 'MAIL FROM')"
session 127.0.0.11 '<>' alice@tls.test --tls
expect_reply "exim 127.0.0.11 with TLS: STARTTLS" "220" "$(reply_to STARTTLS)"
expect_reply "exim 127.0.0.11 with TLS: MAIL" "250" "$(reply_to 'MAIL FROM')"
expect_reply "exim 127.0.0.11 with TLS: alice@tls.test" "250" "$(reply_to 'RCPT TO')"
# The certificate verifies against the rig's CA under its MX name.
session 127.0.0.11 '<>' bob@tls.test --tls --tls-verify --tls-ca-path "$CBV_RIG_CA" \
	--tls-sni mx.tls.test
expect_reply "exim 127.0.0.11 TLS verified against CBV_RIG_CA: bob@tls.test" "250" "$(reply_to 'RCPT TO')"

# ---- fake servers ----
session 127.0.0.30 '<>' alice@fast.test
expect_reply "fast: greeting" "220" "$(reply_to banner)"
expect_reply "fast: alice@fast.test" "250 2.1.5" "$(reply_to 'RCPT TO')"
session 127.0.0.30 '<>' unknown42@fast.test
expect_reply "fast: unknown42@fast.test" "550 5.1.1" "$(reply_to 'RCPT TO')"
session 127.0.0.29 '<>' alice@policy.test
expect_reply "policy: RCPT" "550 5.7.1" "$(reply_to 'RCPT TO')"
session 127.0.0.28 '<>' alice@nullsender.test
expect_reply "nullsender: MAIL FROM:<>" "550 5.7.1" "$(reply_to 'MAIL FROM')"
session 127.0.0.28 sender@example.org alice@nullsender.test
expect_reply "nullsender: MAIL FROM:<sender@example.org>" "250" "$(reply_to 'MAIL FROM')"
expect_reply "nullsender: RCPT after a real sender" "250" "$(reply_to 'RCPT TO')"
session 127.0.0.26 '<>' alice@mid421.test
expect_reply "mid421: MAIL" "421 4.3.2" "$(reply_to 'MAIL FROM')"
session 127.0.0.27 '<>' alice@greet554.test
expect_reply "greet554: greeting" "554 5.3.2" "$(reply_to banner)"

# ---- DNS ----
if command -v dig >/dev/null; then
	TRANSCRIPT=
	ans=$(dig +short +time=2 +tries=1 -p "${CBV_RIG_DNS##*:}" "@${CBV_RIG_DNS%:*}" MX exim.test 2>&1)
	expect_reply "dns: MX exim.test" "10 mx.exim.test." "$ans"
fi

summary t_rig
