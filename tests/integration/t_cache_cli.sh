#!/bin/bash
# `cbv cache` against real stores filled by `cbv verify` at the rig's Exim
# MX: show, list --json, forget, purge, stats, their exit codes and
# errors; a missing store is never created; a store made by root belongs
# to the directory's owner.
#
# The parts that need verifications to be cached (core/cbv_verify.c wired
# to core/cbv_cache, issue 7) print a SKIP line until that is so; the
# probe: verify twice with a fresh cache path, the second must say
# "cache":true.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
CBV=$B/cbv
need_rig
need_built "$CBV"
TMP=$(mktemp -d /tmp/cbv-cachecli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"
{
	rig_profile default 'timeout = 10s' "cache = \"$TMP/db/cbv\""
	rig_profile nocache 'cache = ""'
} >"$TMP/cbv.conf"
mkdir "$TMP/db"
C=("$CBV" cache -c "$TMP/cbv.conf")
V=("$CBV" verify -c "$TMP/cbv.conf")

# ---- without a store: nothing is created ----
expect_run "cache off in the profile: exit 64" 64 '^$' -- "${C[@]}" -p nocache stats
errs=$("${C[@]}" -p nocache list 2>&1 >/dev/null)
expect_text "cache off: says so" "$errs" 'the cache is off in profile "nocache"'
for cmd in "show alice@exim.test" list stats purge "forget exim.test"; do
	# shellcheck disable=SC2086
	expect_run "missing store: $cmd exits 66" 66 '^$' -- "${C[@]}" $cmd
done
errs=$("${C[@]}" show alice@exim.test 2>&1 >/dev/null)
expect_text "missing store: says so" "$errs" "cache $TMP/db/cbv: no store yet"
check "missing store: show/list/stats created no file" test -z "$(ls -A "$TMP/db")"
errs=$("${C[@]}" -o cache="$TMP/nodir/cbv" stats 2>&1 >/dev/null)
expect_text "missing directory: says so" "$errs" "its directory $TMP/nodir is missing"
check "missing directory: not created" test ! -e "$TMP/nodir"
head -c 8192 /dev/urandom >"$TMP/junk"
cp "$TMP/junk" "$TMP/junk.orig"
expect_run "not an LMDB file: exit 69" 69 '^$' -- "${C[@]}" -o cache="$TMP/junk" stats
errs=$("${C[@]}" -o cache="$TMP/junk" list 2>&1 >/dev/null)
expect_text "not an LMDB file: says so" "$errs" "cache $TMP/junk: not an LMDB file"
check "not an LMDB file: left as it was" cmp -s "$TMP/junk" "$TMP/junk.orig"
expect_run "unknown command: 64" 64 '^$' -- "${C[@]}" frobnicate
expect_run "show without an argument: 64" 64 '^$' -- "${C[@]}" show
expect_run "list with an argument: 64" 64 '^$' -- "${C[@]}" list exim.test
expect_run "-o without =: 64" 64 '^$' -- "${C[@]}" -o cache stats
expect_run "unknown profile: 64" 64 '^$' -- "${C[@]}" -p nosuch stats
expect_run "--help: 0" 0 '^usage: cbv cache' -- "$CBV" cache --help
expect_run "cbv --help names cache" 0 'cbv cache ' -- "$CBV" --help

# ---- is the cache wired into verifications? ----
mkdir "$TMP/probe"
"${V[@]}" -o cache="$TMP/probe/cbv" --json alice@exim.test >/dev/null 2>&1
if ! "${V[@]}" -o cache="$TMP/probe/cbv" --json alice@exim.test 2>/dev/null | grep -q '"cache":true'; then
	skip "verifications are not cached yet (core/cbv_verify.c not wired to the cache): show/list/forget/purge/stats on records untested"
	summary t_cache_cli
	exit
fi

# ---- a store made by root belongs to the directory's owner ----
chown Debian-exim:Debian-exim "$TMP/db"
chmod 750 "$TMP/db"
expect_run "verify pass (stored)" 0 '^alice@exim\.test pass accepted' -- "${V[@]}" alice@exim.test
expect_run "verify fail (stored)" 1 '^nobody@exim\.test fail mailbox_unknown' -- "${V[@]}" nobody@exim.test
expect_run "verify with another sender (its own record)" 0 '^alice@exim\.test pass' -- \
	"${V[@]}" -f bob@exim.test alice@exim.test
own=$(stat -c '%U:%G %a' "$TMP/db/cbv" "$TMP/db/cbv-lock" 2>&1 | sort -u)
DETAIL=$own check "store made by root: Debian-exim:Debian-exim, mode 660" test "$own" = "Debian-exim:Debian-exim 660"
expect_run "second verify answered from the cache" 0 '"cache":true' -- "${V[@]}" --json alice@exim.test

# ---- show ----
out=$("${C[@]}" show alice@exim.test 2>&1)
expect_text "show ADDRESS: verdict, reason, message, last poll, times" "$out" \
	'^address alice@exim\.test$' '^  status +pass$' '^  reason +accepted$' '^  message +250 ' \
	'^  host +mx\.exim\.test$' '^  greeting +220 mx\.exim\.test ESMTP' '^  sent +RCPT TO:<alice@exim\.test>' \
	'^  stored +20[0-9-]+T[0-9:]+Z$' '^  expires +20[0-9-]+T[0-9:]+Z \(in (23h|1d)' '^  age +[0-9]+s$'
n=$(grep -c '^address alice@exim.test$' <<<"$out")
check "show ADDRESS: both senders' records" test "$n" -eq 2
expect_text "show ADDRESS: the senders" "$out" '^  sender +<>$' '^  sender +<bob@exim\.test>$'
expect_run "show ADDRESS --json" 0 '^\{"kind":"address","domain":"exim\.test","status":"fail","reason":"mailbox_unknown"' -- \
	"${C[@]}" --json show nobody@exim.test
expect_run "show is case-insensitive in the domain" 0 '^address alice@exim\.test$' -- "${C[@]}" show alice@EXIM.Test
expect_run "show an address never verified: exit 1" 1 '^$' -- "${C[@]}" show zed@exim.test
out=$("${C[@]}" show exim.test)
n=$(grep -c '^address ' <<<"$out")
check "show DOMAIN: all three records" test "$n" -eq 3
expect_run "show a bad address: 64" 64 '^$' -- "${C[@]}" show 'a b@exim.test'

# ---- list ----
out=$("${C[@]}" list)
expect_text "list: one line per record" "$out" \
	'^address alice@exim\.test sender=<> pass/accepted stored=[0-9T:Z-]+ expires=[0-9T:Z-]+ age=[0-9]+s: 250 ' \
	'^address nobody@exim\.test sender=<> fail/mailbox_unknown .*: 550 5\.1\.1'
check "list: three lines" test "$(wc -l <<<"$out")" -eq 3
out=$("${C[@]}" list --json)
if python3 -c 'import json,sys
rows=[json.loads(l) for l in sys.stdin]
assert len(rows)==3, rows
st=sorted((r["address"], r["sender"], r["status"]) for r in rows)
assert st==[("alice@exim.test","","pass"),("alice@exim.test","bob@exim.test","pass"),("nobody@exim.test","","fail")], st
for r in rows:
    assert r["expired"] is False and r["age"]>=0 and r["kind"]=="address"
' <<<"$out" 2>"$TMP/py.err"; then ok "list --json: valid JSON, every record"; else bad "list --json: valid JSON, every record" "$(cat "$TMP/py.err") $out"; fi

# ---- stats ----
out=$("${C[@]}" stats)
expect_text "stats: records by kind and verdict, size, map use" "$out" \
	"^cache +$TMP/db/cbv$" '^records +3: address 3, sender_refused 0, catch_all 0, unreachable 0$' \
	'^addresses +pass 2, fail 1, transient 0, error 0$' '^file +[0-9.]+ [KMG]?i?B \([0-9]+ bytes\)$' \
	'^map +[0-9.]+ [KMG]?i?B in use of 256\.0 MiB'
expect_run "stats --json" 0 '^\{"cache":".*","records":3,"address":3,.*"pass":2,"fail":1,' -- "${C[@]}" stats --json

# ---- forget, purge ----
expect_run "forget ADDRESS: both of its records" 0 '^forgot 2 record\(s\) of alice@exim\.test$' -- \
	"${C[@]}" forget alice@exim.test
expect_run "forgotten: show exits 1" 1 '^$' -- "${C[@]}" show alice@exim.test
expect_run "forgotten: nobody still there" 0 '^address nobody@exim\.test$' -- "${C[@]}" show nobody@exim.test
expect_run "verify again after forget: a callout" 0 '"cache":false' -- "${V[@]}" --json alice@exim.test
expect_run "purge with nothing expired" 0 '^purged 0 expired record\(s\)$' -- "${C[@]}" purge
"${V[@]}" -o cache_fail_ttl=1s bob-nosuch@exim.test >/dev/null 2>&1
sleep 2.2
expect_run "an expired record is listed as such" 0 '^address bob-nosuch@exim\.test .*\(expired\)' -- "${C[@]}" list
expect_run "stats counts it expired" 0 '^expired +1 ' -- "${C[@]}" stats
expect_run "purge removes it" 0 '^purged 1 expired record\(s\)$' -- "${C[@]}" purge
expect_run "purged: gone" 1 '^$' -- "${C[@]}" show bob-nosuch@exim.test
expect_run "forget DOMAIN" 0 '^forgot [1-9][0-9]* record\(s\) of exim\.test$' -- "${C[@]}" forget exim.test
expect_run "forgotten domain: nothing listed" 0 '^$' -- "${C[@]}" list
own=$(stat -c '%U:%G' "$TMP/db/cbv" "$TMP/db/cbv-lock" | sort -u)
check "after root's maintenance: still Debian-exim's" test "$own" = "Debian-exim:Debian-exim"
summary t_cache_cli
