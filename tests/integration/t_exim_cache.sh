#!/bin/bash
# The verification cache end to end in a real Exim (issue 7): `exim -bs`
# sessions through exim-conf's RCPT ACL with a cache in the test's own
# directory.  The second session's verification is answered from the
# cache (mainlog cache=hit, $acl_m_last_poll_cache/_age) and the remote
# MX saw one RCPT; `cache=` in OPTIONS gives cache=off; cache_refresh=yes
# calls out again; an unusable cache path (missing directory, a file that
# is not LMDB) still verifies with the right verdict and one log line per
# process.
#
# Needs verifications to be cached (core/cbv_verify.c wired to the cache):
# until then it prints a SKIP line.  The RCPTs are counted by the rig's
# counting server (count.test, $CBV_RIG_DIR/rcpt.log) when the rig has it,
# else in fakesmtp's -v log for fast.test.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
skip_if_sanitized
front_setup
trap front_cleanup EXIT
LOG=$T/log/mainlog
CBV=$B/cbv

# Directories as Debian's /var/spool/exim4/db: Debian-exim's, 0750.
mkdir "$T/db" "$T/jdir" "$T/probe"
head -c 8192 /dev/urandom >"$T/jdir/junk"
cp "$T/jdir/junk" "$T/junk.orig"
chown -R Debian-exim:Debian-exim "$T/db" "$T/jdir"
chmod 750 "$T/db" "$T/jdir"
{
	rig_profile cached 'timeout = 10s' "cache = \"$T/db/cbv\""
	rig_profile nodir 'timeout = 10s' "cache = \"$T/nodir/cbv\""
	rig_profile junk 'timeout = 10s' "cache = \"$T/jdir/junk\""
} >>"$T/cbv.conf"


# Is the cache wired into verifications?  Verify twice with a fresh path.
"$CBV" verify -c "$T/cbv.conf" -o cache="$T/probe/cbv" alice@exim.test >/dev/null 2>&1
if ! "$CBV" verify -c "$T/cbv.conf" -o cache="$T/probe/cbv" --json alice@exim.test 2>/dev/null |
	grep -q '"cache":true'; then
	skip "verifications are not cached yet (core/cbv_verify.c not wired to the cache)"
	summary
	exit
fi

# Where RCPTs are counted.
if "$CBV" verify -c "$T/cbv.conf" -o cache= x@count.test 2>/dev/null | grep -q ' pass '; then
	DOM=count.test
	rcpts() { grep -cF "<$1>" "$CBV_RIG_DIR/rcpt.log" 2>/dev/null; }
else
	DOM=fast.test
	rcpts() { grep -cF "RCPT TO:<$1>" "$CBV_RIG_DIR/fakesmtp.log" 2>/dev/null; }
fi
GOOD=cache$$@$DOM
UNKNOWN=unknown-cache$$@$DOM

# session OPTIONS RCPT...: one -bs session, the recipients verified with
# CBV_RECIPIENT_OPTIONS; replies in $out.
session() {
	local opts=$1 r lines=()
	shift
	for r in "$@"; do lines+=("RCPT TO:<$r>"); done
	out=$(bs_session -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=$opts" -- "HELO client.test" \
		"MAIL FROM:<>" "${lines[@]}" DATA "Subject: cache" "" body . QUIT)
}

# ---- a miss, then a hit in another Exim process ----
mark
session profile=cached "$GOOD"
expect_text "first session: RCPT accepted" "$out" $'^250 OK\n250 Accepted'
l=$(newlog)
expect_text "first session: mainlog says cache=miss" "$l" \
	"cbv: <$GOOD> sender=<> pass/accepted host=mx\\.$DOM \\[[^]]+\\] elapsed=[0-9]+ms cache=miss: 250"
expect_text "first session: \$acl_m_last_poll_cache 0, _age 0" "$l" 'X-CBV result=<pass> .* cache=<0> age=<0>'
check "first session: one RCPT at the remote MX" test "$(rcpts "$GOOD")" -eq 1
own=$(stat -c '%U:%G %a' "$T/db/cbv" "$T/db/cbv-lock" 2>&1 | sort -u)
DETAIL=$own check "the cache file: Debian-exim:Debian-exim, 0660" test "$own" = "Debian-exim:Debian-exim 660"

mark
session profile=cached "$GOOD"
expect_text "second session: RCPT accepted" "$out" $'^250 OK\n250 Accepted'
l=$(newlog)
expect_text "second session: mainlog says cache=hit with age" "$l" \
	"cbv: <$GOOD> sender=<> pass/accepted host=mx\\.$DOM \\[[^]]+\\] elapsed=[0-9]+ms cache=hit age=[0-9]+s: 250"
expect_text "second session: \$acl_m_last_poll_cache 1, _age set, last poll as the callout's" "$l" \
	"X-CBV result=<pass> .* host=<mx\\.$DOM> .* sent=<RCPT TO:<$GOOD>> cache=<1> age=<[0-9]+>"
check "second session: still one RCPT at the remote MX" test "$(rcpts "$GOOD")" -eq 1

# ---- a fail is cached too ----
session profile=cached "$UNKNOWN"
expect_text "unknown user: 550" "$out" "^550-5\\.1\\.1 <$UNKNOWN>: recipient verification failed"
mark
session profile=cached "$UNKNOWN"
expect_text "unknown user again: 550 from the cache" "$out" "^550-5\\.1\\.1 <$UNKNOWN>: recipient verification failed"
expect_text "unknown user again: cache=hit" "$(newlog)" "cbv: <$UNKNOWN> sender=<> fail/mailbox_unknown .* cache=hit age="
check "unknown user: one RCPT at the remote MX" test "$(rcpts "$UNKNOWN")" -eq 1

# ---- per call: cache= and cache_refresh=yes ----
mark
session "profile=cached cache=" "$GOOD"
expect_text "cache= in OPTIONS: accepted" "$out" $'^250 OK\n250 Accepted'
expect_text "cache= in OPTIONS: mainlog says cache=off" "$(newlog)" "cbv: <$GOOD> sender=<> pass/accepted .* cache=off: 250"
check "cache= in OPTIONS: a callout (two RCPTs now)" test "$(rcpts "$GOOD")" -eq 2
mark
session "profile=cached cache_refresh=yes" "$GOOD"
expect_text "cache_refresh=yes: a callout, cache=miss" "$(newlog)" "cbv: <$GOOD> sender=<> pass/accepted .* cache=miss: 250"
check "cache_refresh=yes: three RCPTs now" test "$(rcpts "$GOOD")" -eq 3
mark
session profile=cached "$GOOD"
l=$(newlog)
if matches 'cache=hit age=[0-9]+s' "$l"; then
	ok "after the refresh: a hit again"
	age=$(sed -n 's/.*cache=hit age=\([0-9]*\)s.*/\1/p' <<<"$l" | head -n 1)
	check "after the refresh: the age counts from the refresh" test "${age:-99}" -le 5
else
	bad "after the refresh: a hit again" "$l"
fi
check "after the refresh: no new RCPT" test "$(rcpts "$GOOD")" -eq 3

# ---- an unusable cache still verifies, one log line per process ----
for p in nodir junk; do
	mark
	session "profile=$p" "$GOOD" "$UNKNOWN"
	expect_text "$p: verdicts right (250, 550)" "$out" \
		$'^250 Accepted\n550-5\\.1\\.1 <'"$UNKNOWN"'>: recipient verification failed'
	l=$(newlog)
	n=$(grep -c "cbv: <[^>]*> sender=<> .* cache=off: " <<<"$l")
	check "$p: two verifications logged with cache=off" test "$n" -eq 2
	n=$(grep -c "cache $T/" <<<"$l")
	DETAIL=$l check "$p: one line about the cache for the process" test "$n" -eq 1
done
expect_text "missing directory: the line says so" "$(grep -F "$T/nodir" "$LOG")" "cache $T/nodir/cbv: .*verifying without it"
expect_text "not LMDB: the line says so" "$(grep -F "$T/jdir/junk" "$LOG")" "cache $T/jdir/junk: not an LMDB file"
check "missing directory: not created" test ! -e "$T/nodir"
check "not LMDB: the file is left as it was" cmp -s "$T/jdir/junk" "$T/junk.orig"
check "no paniclog entry from any of it" test -z "$(grep -v 'lost privilege' "$T/log/paniclog" 2>/dev/null)"
summary
