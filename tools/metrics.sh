#!/bin/bash
# tools/metrics.sh - the numbers issue 12 asks for, before and after a change.
#
#   tools/metrics.sh [N]       N longest functions (default 15)
#
# Prints, for the source outside tests/ (core cli dlfunc server bench):
#   1. the N longest functions, file:function:lines (universal-ctags end lines);
#   2. `duplicates --most 40` over a scratch copy of the tracked tree, tests/ removed;
#   3. where a config key and a reason word are spelt: string literals and
#      mentions per file, as a proxy for "places a new one touches" (the
#      hand count, with function names, is in the issue 12 report);
#   4. lines per directory (wc -l of *.c *.h, comments and blanks included).
# Reads the working tree; writes only a temporary directory it removes.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-15}
dirs="core cli dlfunc server bench"
# shellcheck disable=SC2046 # one pathspec a word
src=$(git ls-files -- $(for d in $dirs; do printf '%s/*.c %s/*.h ' "$d" "$d"; done))

echo "== $n longest functions (file:function:lines)"
command -v ctags >/dev/null || { echo "need universal-ctags (apt-get install universal-ctags)"; exit 1; }
# shellcheck disable=SC2086
ctags --fields=+ne --kinds-C=f -o - $src |
	awk -F'\t' '{ s = e = 0
		for (i = 4; i <= NF; i++) {
			if ($i ~ /^line:/) s = substr($i, 6)
			if ($i ~ /^end:/) e = substr($i, 5)
		}
		if (s && e) printf "%d %s:%s:%d\n", e - s + 1, $2, $1, e - s + 1 }' |
	sort -k1,1nr -k2 | head -n "$n" | cut -d' ' -f2

echo
echo "== duplicates --most 40, outside tests/"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z | grep -zv '^tests/\|^tools/metrics.sh' | xargs -0 cp --parents -t "$tmp" 2>/dev/null || true
(cd "$tmp" && duplicates --most 40 --seconds 120)

# Only the key names that mean nothing else (not helo, port, timeout, map...).
keys='"(mailfrom|connect_timeout|command_timeout|max_hosts|starttls|dns_servers|deny_networks|vars_acl|callout_url|tls_verify|ca_dir)"'
reasons='"(accepted|mailbox_unknown|mailbox_disabled|mailbox_full|bad_syntax|no_domain|null_mx|no_mail_host|policy_refused|sender_refused|greeting_refused|tls_required|tls_failed|greylisted|temp_failure|connect_failed|dns_failure|forbidden_target|protocol_error|rate_limited)"'
echo
echo "== config key names as C string literals, per file (outside tests/)"
# shellcheck disable=SC2086
grep -cE "$keys" $src | grep -v ':0$' || echo "(none)"
echo "-- files naming command_timeout (any form, docs included, tests excluded)"
git ls-files | grep -v '^tests/\|^tools/metrics.sh' | xargs grep -l 'command_timeout' | tr '\n' ' '; echo
echo
echo "== reason words (all but timeout) as C string literals, per file (outside tests/)"
# shellcheck disable=SC2086
grep -cE "$reasons" $src | grep -v ':0$' || echo "(none)"
echo "-- files naming mailbox_full (any form, docs included, tests excluded)"
git ls-files | grep -v '^tests/\|^tools/metrics.sh' | xargs grep -l 'mailbox_full' | tr '\n' ' '; echo

echo
echo "== lines per directory (wc -l *.c *.h)"
for d in core cli dlfunc server bench tests/unit tests/fuzz tests/fakes; do
	f=$(git ls-files -- "$d/*.c" "$d/*.h")
	# shellcheck disable=SC2086
	[ -n "$f" ] && printf '%-12s %6d\n' "$d" "$(cat $f | wc -l)"
done
git ls-files -z -- '*.c' '*.h' | xargs -0 cat | wc -l | xargs printf '%-12s %6d\n' total
