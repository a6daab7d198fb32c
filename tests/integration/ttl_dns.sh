# shellcheck shell=bash
# tests/integration/ttl_dns.sh - a dnsmasq of the test's own that answers
# with non-zero TTLs (the rig's answers with TTL 0, so nothing is cached
# there), authoritative for "test" so negative answers carry an SOA
# (RFC 2308), and logs every query.  Sourced by t_shared_store.sh and
# t_exim_shared.sh.
#
#   ttl_dns_start DIR     starts it (DNS_PORT, DNS_LOG set); zone:
#                         exim.test MX 10 mx2.grey.test (127.0.0.12, the
#                         rig's Exim that issues TLS tickets), no AAAA;
#                         anything else under test NXDOMAIN
#   ttl_dns_stop          stops it
#   dns_queries TYPE NAME how many TYPE queries for NAME it has seen

ttl_dns_start() {
	local dir=$1 i
	DNS_PORT=$(free_port)
	DNS_LOG=$dir/dns.log
	DNS_PIDFILE=$dir/dns.pid
	cat >"$dir/dns.conf" <<EOC
no-resolv
no-hosts
no-poll
cache-size=0
no-ident
auth-server=ns.test,127.0.0.1
auth-zone=test
auth-soa=1,hostmaster.test,1200,120,604800
auth-ttl=300
local-ttl=300
mx-host=exim.test,mx2.grey.test,10
host-record=mx2.grey.test,127.0.0.12
EOC
	dnsmasq --conf-file="$dir/dns.conf" --port="$DNS_PORT" --listen-address=127.0.0.1 \
		--bind-interfaces --pid-file="$DNS_PIDFILE" --log-queries \
		--log-facility="$DNS_LOG" || return 1
	for i in $(seq 50); do
		[[ -s $DNS_PIDFILE ]] && return 0
		sleep 0.1
	done
	return 1
}

ttl_dns_stop() {
	[[ -s ${DNS_PIDFILE:-} ]] && kill "$(cat "$DNS_PIDFILE")" 2>/dev/null
	DNS_PIDFILE=
}

dns_queries() {
	# authoritative answers are logged as auth[TYPE], others as query[TYPE]
	grep -cE "(query|auth)\[$1\] $2 from" "$DNS_LOG" 2>/dev/null
}
