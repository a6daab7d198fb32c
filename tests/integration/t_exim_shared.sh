#!/bin/bash
# TLS sessions and MX answers shared through the cache store by separate
# Exim processes calling cbv.so (issue 9, items 1 and 2): two SMTP
# sessions (`exim -bs`, each its own process, as each connection to an
# Exim daemon is) verify a recipient at exim.test, whose MX here is the
# rig's Exim at 127.0.0.12 (it issues TLS tickets; DNS from ttl_dns.sh,
# with TTLs).  The second session resumes the first one's TLS session
# (last_poll tls ends in ":resumed") and sends no MX query; with
# tls_verify, a session kept without it is not resumed.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/exim/lib.sh"
. "$TOP/tests/integration/ttl_dns.sh"
skip_if_sanitized
front_setup
trap 'ttl_dns_stop; front_cleanup' EXIT
ttl_dns_start "$T" || { bad "dnsmasq with TTLs starts"; summary; exit 1; }
mkdir "$T/db"
chown Debian-exim:Debian-exim "$T/db"
chmod 750 "$T/db"
shared() { # NAME [LINE...]
	cbv_profile "$1" "cache = \"$T/db/cbv\"" "dns_servers = \"127.0.0.1:$DNS_PORT\"" \
		"port = $CBV_RIG_PORT" 'deny_networks = [ ]' 'starttls = require' \
		"ca_dir = \"$CBV_RIG_CA_DIR\"" 'timeout = 10s' 'cache_pass_ttl = 0' "${@:2}"
}
{
	shared shared
	shared sharedv 'tls_verify = yes'
} >>"$T/cbv.conf"

# session PROFILE: one -bs session (one Exim process) verifying alice@exim.test.
session() {
	out=$(bs_session -DFRONT_RCPT=1 "-DCBV_RECIPIENT_OPTIONS=profile=$1" -- "HELO client.test" \
		"MAIL FROM:<>" "RCPT TO:<alice@exim.test>" DATA "Subject: shared" "" body . QUIT)
}

# tls_seen NAME ERE: the session was accepted and its last poll tls matches.
tls_seen() {
	local l
	l=$(newlog)
	if matches $'^250 OK\n250 Accepted' "$out" && matches "X-CBV-LP status=<pass> .* tls=<$2>" "$l"; then
		ok "$1"
	else
		bad "$1" "$out"$'\n'"$l"
	fi
}

mx0=$(dns_queries MX exim.test)
mark
session shared
tls_seen "first Exim process: full handshake" 'TLSv1\.[23]:[^:]+:unverified'
mx1=$(dns_queries MX exim.test)
mark
session shared
tls_seen "second Exim process: resumed the first one's session" 'TLSv1\.[23]:[^:]+:unverified:resumed'
mx2=$(dns_queries MX exim.test)
DETAIL="MX queries: $mx0, $mx1, $mx2" check "the first process asked for the MX" test "$mx1" -eq $((mx0 + 1))
DETAIL="MX queries: $mx1, $mx2" check "the second process sent no MX query" test "$mx2" -eq "$mx1"
mark
session sharedv
tls_seen "tls_verify=yes: the unverified session is not resumed" 'TLSv1\.[23]:[^:]+:verified'
mark
session sharedv
tls_seen "tls_verify=yes, next process: its own verified session resumed" 'TLSv1\.[23]:[^:]+:verified:resumed'
own=$(stat -c '%U:%G %a' "$T/db/cbv" 2>&1)
DETAIL=$own check "the store holding sessions: Debian-exim:Debian-exim, 0660" test "$own" = "Debian-exim:Debian-exim 660"
summary
