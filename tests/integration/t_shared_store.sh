#!/bin/bash
# TLS sessions and DNS answers shared across processes through the cache
# store (issue 9, items 1 and 2; core/cbv_share.c): separate `cbv verify`
# processes against the rig's Exim at 127.0.0.12, which issues TLS
# session tickets, with DNS from a dnsmasq of our own that answers with
# non-zero TTLs (ttl_dns.sh).  For LMDB and for Redis:
#   - the second process resumes the first one's session (":resumed");
#   - a session kept by a tls_verify=no process is not offered to a
#     tls_verify=yes one, not even copied under its key by hand;
#   - a damaged, oversized, other-version or not-a-session blob is
#     ignored: full handshake, the right verdict, no crash;
#   - cache_tls_sessions = no: nothing resumed across processes;
#   - the second process sends no MX (nor A) query; negative answers
#     are shared for their SOA's TTL; cache_dns = no: a query each time.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/integration/ttl_dns.sh"
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
CBV=$B/cbv
TOOL=$TOP/tests/integration/blobtool.py
need_rig
need_built "$CBV"
TMP=$(mktemp -d /tmp/cbv-shared.XXXXXX)
REDIS_PID=
cleanup() {
	ttl_dns_stop
	[[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
chmod 755 "$TMP"
ttl_dns_start "$TMP" || { bad "dnsmasq with TTLs starts" "$(cat "$TMP"/dns.log 2>/dev/null)"; summary t_shared_store; exit 1; }

# profile NAME CACHE [LINE...]: STARTTLS required at the rig's port, our DNS.
profile() {
	cbv_profile "$1" "cache = \"$2\"" "dns_servers = \"127.0.0.1:$DNS_PORT\"" \
		"port = $CBV_RIG_PORT" 'deny_networks = [ ]' 'starttls = require' \
		"ca_dir = \"$CBV_RIG_CA_DIR\"" 'timeout = 10s' 'cache_pass_ttl = 0' \
		'cache_fail_ttl = 0' "${@:3}"
}

# tls_of CONF [ARGS...]: one `cbv verify` process for alice@exim.test;
# sets $line (its JSON), $tls (last poll tls) and $rc.
tls_of() {
	local conf=$1
	shift
	line=$("$CBV" verify -c "$conf" --json "$@" alice@exim.test 2>"$TMP/err")
	rc=$?
	tls=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("tls",""))' "$line" 2>/dev/null)
}

# expect_tls NAME WANT_RE CONF [ARGS...]: pass, exit 0, tls matching WANT_RE.
expect_tls() {
	local name=$1 re=$2
	shift 2
	tls_of "$@"
	if ((rc == 0)) && [[ $line == *'"status":"pass"'* ]] && matches "$re" "$tls"; then
		ok "$name"
	else
		bad "$name" "rc=$rc tls=$tls want /$re/; $line; $(head -c 400 "$TMP/err")"
	fi
}

FULL_NOV='^TLSv1\.[23]:[^:]+:unverified$'
RES_NOV='^TLSv1\.[23]:[^:]+:unverified:resumed$'
FULL_VER='^TLSv1\.[23]:[^:]+:verified$'
RES_VER='^TLSv1\.[23]:[^:]+:verified:resumed$'

# backend LABEL CONF MANGLE...: the TLS checks against one store; MANGLE
# runs blobtool with its mode appended.
backend() {
	local what=$1 conf=$2 mode
	shift 2
	expect_tls "$what: first process: full handshake" "$FULL_NOV" "$conf"
	expect_tls "$what: second process: resumed from the store" "$RES_NOV" "$conf"
	expect_tls "$what: tls_verify=yes: the unverified session is not offered" "$FULL_VER" \
		"$conf" -o tls_verify=yes
	expect_tls "$what: tls_verify=yes, next process: its own verified session resumed" \
		"$RES_VER" "$conf" -o tls_verify=yes
	if "$@" swap; then
		expect_tls "$what: unverified session copied under the verifying key: not offered" \
			"$FULL_VER" "$conf" -o tls_verify=yes
	else
		bad "$what: could not copy a session under the verifying key"
	fi
	for mode in corrupt version oversize badder; do
		expect_tls "$what: before $mode: resumed" "$RES_NOV" "$conf"
		if "$@" "$mode"; then
			expect_tls "$what: $mode blob ignored: full handshake, pass" "$FULL_NOV" "$conf"
		else
			bad "$what: no session blob to damage ($mode)"
		fi
	done
	expect_tls "$what: a good session again after the damage" "$RES_NOV" "$conf"
}

# ---- LMDB ----
mkdir "$TMP/db" "$TMP/off" "$TMP/nodns"
profile default "$TMP/db/cbv" >"$TMP/lmdb.conf"
backend LMDB "$TMP/lmdb.conf" /usr/bin/python3 "$TOOL" lmdb "$TMP/db/cbv"
own=$(stat -c '%a' "$TMP/db/cbv")
check "LMDB: the store holding sessions is mode 0660" test "$own" = 660

profile default "$TMP/off/cbv" 'cache_tls_sessions = no' >"$TMP/off.conf"
expect_tls "cache_tls_sessions=no: first process: full" "$FULL_NOV" "$TMP/off.conf"
expect_tls "cache_tls_sessions=no: second process: full again" "$FULL_NOV" "$TMP/off.conf"
n=$(/usr/bin/python3 "$TOOL" lmdb "$TMP/off/cbv" count)
check "cache_tls_sessions=no: no session in the store" test "$n" = 0

# ---- DNS through the store (the LMDB one above already holds answers) ----
mx0=$(dns_queries MX exim.test)
a0=$(dns_queries A mx2.grey.test)
mkdir "$TMP/dns"
profile default "$TMP/dns/cbv" >"$TMP/dns.conf"
expect_tls "DNS: first process" "$FULL_NOV" "$TMP/dns.conf"
mx1=$(dns_queries MX exim.test)
expect_tls "DNS: second process" "$RES_NOV" "$TMP/dns.conf"
expect_tls "DNS: third process" "$RES_NOV" "$TMP/dns.conf"
mx3=$(dns_queries MX exim.test)
a3=$(dns_queries A mx2.grey.test)
DETAIL="MX queries: $mx0 before, $mx1 after the first, $mx3 after the third" \
	check "DNS: the first process asked for the MX" test "$mx1" -eq $((mx0 + 1))
DETAIL="MX queries: $mx1 after the first, $mx3 after the third" \
	check "DNS: the second and third processes sent no MX query" test "$mx3" -eq "$mx1"
DETAIL="A queries: $a0 before, $a3 after" \
	check "DNS: and one A query for the MX host in all" test "$a3" -eq $((a0 + 1))
nx0=$(dns_queries MX nx.test)
for i in 1 2; do
	expect_run "DNS: NXDOMAIN ($i): fail no_domain" 1 '^nobody@nx\.test fail no_domain' -- \
		"$CBV" verify -c "$TMP/dns.conf" nobody@nx.test
done
nx2=$(dns_queries MX nx.test)
DETAIL="MX queries for nx.test: $nx0 before, $nx2 after two processes" \
	check "DNS: the NXDOMAIN (with SOA, RFC 2308) shared: one query" test "$nx2" -eq $((nx0 + 1))
profile default "$TMP/nodns/cbv" 'cache_dns = no' >"$TMP/nodns.conf"
m0=$(dns_queries MX exim.test)
expect_tls "cache_dns=no: first process" "$FULL_NOV" "$TMP/nodns.conf"
expect_tls "cache_dns=no: second process (its session shared still)" "$RES_NOV" "$TMP/nodns.conf"
m2=$(dns_queries MX exim.test)
DETAIL="MX queries: $m0 before, $m2 after" \
	check "cache_dns=no: each process asks for the MX" test "$m2" -eq $((m0 + 2))

# ---- Redis ----
if ! command -v redis-server >/dev/null; then
	skip "redis-server not installed: the Redis store untested"
else
	RPORT=$(free_port)
	mkdir "$TMP/redis"
	redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$TMP/redis" >"$TMP/redis/log" 2>&1 &
	REDIS_PID=$!
	for i in $(seq 50); do
		/usr/bin/python3 "$TOOL" redis 127.0.0.1 "$RPORT" cbv: count >/dev/null 2>&1 && break
		sleep 0.1
	done
	profile default "redis://127.0.0.1:$RPORT/0" >"$TMP/redis.conf"
	backend Redis "$TMP/redis.conf" /usr/bin/python3 "$TOOL" redis 127.0.0.1 "$RPORT" cbv:
	mxr0=$(dns_queries MX exim.test)
	expect_tls "Redis DNS: another process" "$RES_NOV" "$TMP/redis.conf"
	mxr1=$(dns_queries MX exim.test)
	DETAIL="MX queries: $mxr0 before, $mxr1 after" \
		check "Redis DNS: a later process sends no MX query" test "$mxr1" -eq "$mxr0"
fi
summary t_shared_store
