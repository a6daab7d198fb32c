#!/bin/bash
# Debian's own split configuration (the exim4-config package's conf.d)
# with the drop-ins installed exactly as docs/exim.md says, built with
# update-exim4.conf, then host-checking sessions (exim4 -bhc) whose
# senders cbv.so verifies against the rig.  Proves the README's promise:
# a stock Debian Exim plus the snippet verifies senders.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
skip_if_sanitized
need_rig
if [[ ! -d /etc/exim4/conf.d ]] || ! command -v update-exim4.conf >/dev/null; then
	skip "Debian's exim4-config is not installed"
	echo "0 passed, 0 failed"
	exit 0
fi

D=$(mktemp -d /tmp/cbv-debian.XXXXXX)
trap 'rm -rf "$D"' EXIT
chmod 755 "$D"
cp -a /etc/exim4 "$D/etc"
# the package's split configuration, whatever this machine was set to
sed -i "s/^dc_use_split_config=.*/dc_use_split_config='true'/" "$D/etc/update-exim4.conf.conf"

# docs/exim.md, "Debian, split configuration"
install -m 644 exim-conf/conf.d/main/05_exim-cbv_macros "$D/etc/conf.d/main/"
install -m 644 exim-conf/conf.d/acl/25_exim-cbv_acls "$D/etc/conf.d/acl/"
install -m 644 exim-conf/cbv_rcpt.acl exim-conf/cbv_mail.acl "$D/etc/"
install -m 644 "$B/cbv.so" "$D/cbv.so"
rig_cbv_conf "$D/cbv.conf"
cat >"$D/etc/conf.d/main/00_local_macros" <<MACROS
CHECK_RCPT_LOCAL_ACL_FILE = $D/etc/cbv_rcpt.acl
# test locations instead of /usr/lib/exim4/modules/cbv.so and /etc/exim4/cbv.conf
CBV_SO = $D/cbv.so
CBV_OPTIONS = config=$D/cbv.conf
# the test may not ask any DNS server but the rig's: no reverse lookups
MAIN_HOST_LOOKUP =
# and a fixed name, so Exim does not look its own host name up either
MAIN_HARDCODE_PRIMARY_HOSTNAME = debian.cbv.test
MACROS

if update-exim4.conf -d "$D/etc" -o "$D/exim4.conf" 2>"$D/err"; then
	ok "update-exim4.conf builds the configuration with the drop-ins"
else
	bad "update-exim4.conf builds the configuration with the drop-ins" "$(cat "$D/err")"
	summary
	exit 1
fi
chmod 644 "$D/exim4.conf"
if grep -q "cbv_check_sender" "$D/exim4.conf" && "$EXIM" -C "$D/exim4.conf" -bV >"$D/err" 2>&1; then
	ok "the generated configuration is valid"
else
	bad "the generated configuration is valid" "$(tail -5 "$D/err")"
fi

HOST=$("$EXIM" -C "$D/exim4.conf" -bP primary_hostname 2>/dev/null | sed 's/.*= *//')
# session FROM: an SMTP session from a (simulated) outside host, documentation
# range, in -bh mode: nothing is delivered and no traffic goes to that host.
# (Not postmaster: Debian accepts postmaster before the local ACL hook.)
session() {
	printf 'EHLO client.example\r\nMAIL FROM:<%s>\r\nRCPT TO:<root@%s>\r\nQUIT\r\n' "$1" "$HOST" |
		"$EXIM" -C "$D/exim4.conf" -bhc 192.0.2.25 2>"$D/log" | tr -d '\r'
}
while read -r from code reason; do
	out=$(session "$from")
	rcpt=$(grep -E '^[0-9]{3} ' <<<"$out" | sed -n '4p')
	if [[ $rcpt == "$code"* ]] && grep -q "cbv: <$from> .*/$reason" "$D/log"; then
		ok "stock Debian + drop-ins: <$from> -> $code ($reason)"
	else
		bad "stock Debian + drop-ins: <$from> -> $code ($reason)" "RCPT reply: $rcpt
$(grep -E 'cbv|LOG' "$D/log" | head -5)"
	fi
done <<'ROWS'
alice@exim.test 250 accepted
nobody@exim.test 550 mailbox_unknown
grey@exim.test 451 greylisted
x@no-such-domain.test 550 no_domain
ROWS
summary
