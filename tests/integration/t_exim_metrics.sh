#!/bin/bash
# The counters for operators from real Exim processes: each `exim -bs`
# session is its own process loading cbv.so, whose in-memory counters die
# with it; what they verified must add up in the cache store, as
# `cbv cache stats` (and --prometheus) show: a miss, a hit in another
# process, a fail, and an address refused before any lookup.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
skip_if_sanitized
front_setup
trap front_cleanup EXIT
CBV=$B/cbv

mkdir "$T/db"
chown Debian-exim:Debian-exim "$T/db"
chmod 750 "$T/db"
rig_profile cached 'timeout = 10s' "cache = \"$T/db/cbv\"" >>"$T/cbv.conf"

# session RCPT...: one -bs session (one Exim process), recipients verified
# with profile=cached; replies in $out.
session() {
	local r lines=()
	for r in "$@"; do lines+=("RCPT TO:<$r>"); done
	out=$(bs_session -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=profile=cached" -- \
		"HELO client.test" "MAIL FROM:<>" "${lines[@]}" QUIT)
}

session alice@exim.test
expect_text "process 1: alice accepted" "$out" '^250 Accepted'
session alice@exim.test nobody@exim.test
expect_text "process 2: alice accepted, nobody refused" "$out" '^250 Accepted' '^550'
session bob@exim.test
expect_text "process 3: bob accepted" "$out" '^250 Accepted'

out=$("$CBV" cache -c "$T/cbv.conf" -p cached stats 2>&1)
expect_text "three Exim processes add up in cache stats" "$out" \
	'^verified   4 ' '^  pass      accepted          3$' '^  fail      mailbox_unknown   1$' \
	'^lookups    lmdb hit 1, lmdb miss 3$'
out=$("$CBV" cache -c "$T/cbv.conf" -p cached stats --prometheus 2>&1)
expect_text "the same in Prometheus text" "$out" \
	'^cbv_verifications_total\{status="pass",reason="accepted"\} 3$' \
	'^cbv_cache_requests_total\{backend="lmdb",result="hit"\} 1$' \
	'^cbv_verification_duration_seconds_count 4$'

summary
