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
profile() { # NAME CACHE
	cat <<-EOF
	smtp_cbv "$1" {
	  dns_servers = "$CBV_RIG_DNS"
	  port = $CBV_RIG_PORT
	  deny_networks = [ ]
	  timeout = 10s
	  cache = "$2"
	}
	EOF
}
{
	profile cached "$T/db/cbv"
	profile nodir "$T/nodir/cbv"
	profile junk "$T/jdir/junk"
} >>"$T/cbv.conf"

mark() { MARK=$( (wc -l <"$LOG") 2>/dev/null || echo 0); }
newlog() { tail -n +"$((MARK + 1))" "$LOG" 2>/dev/null; }
has() { grep -Eq -- "$1" <<<"$2"; }
expect() { # NAME REGEX TEXT
	if has "$2" "$3"; then ok "$1"; else bad "$1" "want /$2/ in:"$'\n'"$3"; fi
}
skip() { echo "ok - # SKIP $1"; }

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
expect "first session: RCPT accepted" $'^250 OK\n250 Accepted' "$out"
l=$(newlog)
expect "first session: mainlog says cache=miss" \
	"cbv: <$GOOD> sender=<> pass/accepted host=mx\\.$DOM \\[[^]]+\\] elapsed=[0-9]+ms cache=miss: 250" "$l"
expect "first session: \$acl_m_last_poll_cache 0, _age 0" 'X-CBV result=<pass> .* cache=<0> age=<0>' "$l"
check "first session: one RCPT at the remote MX" test "$(rcpts "$GOOD")" -eq 1
own=$(stat -c '%U:%G %a' "$T/db/cbv" "$T/db/cbv-lock" 2>&1 | sort -u)
DETAIL=$own check "the cache file: Debian-exim:Debian-exim, 0660" test "$own" = "Debian-exim:Debian-exim 660"

mark
session profile=cached "$GOOD"
expect "second session: RCPT accepted" $'^250 OK\n250 Accepted' "$out"
l=$(newlog)
expect "second session: mainlog says cache=hit with age" \
	"cbv: <$GOOD> sender=<> pass/accepted host=mx\\.$DOM \\[[^]]+\\] elapsed=[0-9]+ms cache=hit age=[0-9]+s: 250" "$l"
expect "second session: \$acl_m_last_poll_cache 1, _age set, last poll as the callout's" \
	"X-CBV result=<pass> .* host=<mx\\.$DOM> .* sent=<RCPT TO:<$GOOD>> cache=<1> age=<[0-9]+>" "$l"
check "second session: still one RCPT at the remote MX" test "$(rcpts "$GOOD")" -eq 1

# ---- a fail is cached too ----
session profile=cached "$UNKNOWN"
expect "unknown user: 550" "^550-5\\.1\\.1 <$UNKNOWN>: recipient verification failed" "$out"
mark
session profile=cached "$UNKNOWN"
expect "unknown user again: 550 from the cache" "^550-5\\.1\\.1 <$UNKNOWN>: recipient verification failed" "$out"
expect "unknown user again: cache=hit" "cbv: <$UNKNOWN> sender=<> fail/mailbox_unknown .* cache=hit age=" "$(newlog)"
check "unknown user: one RCPT at the remote MX" test "$(rcpts "$UNKNOWN")" -eq 1

# ---- per call: cache= and cache_refresh=yes ----
mark
session "profile=cached cache=" "$GOOD"
expect "cache= in OPTIONS: accepted" $'^250 OK\n250 Accepted' "$out"
expect "cache= in OPTIONS: mainlog says cache=off" "cbv: <$GOOD> sender=<> pass/accepted .* cache=off: 250" "$(newlog)"
check "cache= in OPTIONS: a callout (two RCPTs now)" test "$(rcpts "$GOOD")" -eq 2
mark
session "profile=cached cache_refresh=yes" "$GOOD"
expect "cache_refresh=yes: a callout, cache=miss" "cbv: <$GOOD> sender=<> pass/accepted .* cache=miss: 250" "$(newlog)"
check "cache_refresh=yes: three RCPTs now" test "$(rcpts "$GOOD")" -eq 3
mark
session profile=cached "$GOOD"
l=$(newlog)
if has 'cache=hit age=[0-9]+s' "$l"; then
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
	expect "$p: verdicts right (250, 550)" \
		$'^250 Accepted\n550-5\\.1\\.1 <'"$UNKNOWN"'>: recipient verification failed' "$out"
	l=$(newlog)
	n=$(grep -c "cbv: <[^>]*> sender=<> .* cache=off: " <<<"$l")
	check "$p: two verifications logged with cache=off" test "$n" -eq 2
	n=$(grep -c "cache $T/" <<<"$l")
	DETAIL=$l check "$p: one line about the cache for the process" test "$n" -eq 1
done
expect "missing directory: the line says so" "cache $T/nodir/cbv: .*verifying without it" "$(grep -F "$T/nodir" "$LOG")"
expect "not LMDB: the line says so" "cache $T/jdir/junk: not an LMDB file" "$(grep -F "$T/jdir/junk" "$LOG")"
check "missing directory: not created" test ! -e "$T/nodir"
check "not LMDB: the file is left as it was" cmp -s "$T/jdir/junk" "$T/junk.orig"
check "no paniclog entry from any of it" test -z "$(grep -v 'lost privilege' "$T/log/paniclog" 2>/dev/null)"
summary
