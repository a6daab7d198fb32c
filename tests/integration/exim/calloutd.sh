# tests/integration/exim/calloutd.sh - Debian's calloutd (mailfromd 8.15)
# for tests that talk to it, as t_calloutd.sh runs it:
#
#   . tests/integration/exim/calloutd.sh
#   why=$(calloutd_unusable) && skip "$why"     # prints why, or fails if usable
#   calloutd_reexec SCRIPT ARGS...              # SCRIPT --calloutd-inner NS ARGS...
#   # inside:  calloutd_start NS  (sets CALLOUTD_UNIX_URL, CALLOUTD_INET_URL)
#   #          calloutd_stop
#
# calloutd cannot be told a DNS port (adns reads resolv.conf: port 53) nor
# an SMTP port (always 25).  calloutd_reexec therefore runs SCRIPT inside a
# private network and mount namespace (unshare -mn): its own loopback, a
# private copy of the rig with DNS on 127.0.0.1:53 and SMTP on port 25,
# and a resolv.conf bind-mounted over /etc/resolv.conf.  Nothing started
# in there is visible outside, and nothing survives it.

CALLOUTD=${CALLOUTD:-/usr/sbin/calloutd}
CALLOUTD_TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}

# Prints why calloutd cannot be used here and succeeds; fails if it can.
calloutd_unusable() {
	if [[ ! -x $CALLOUTD ]]; then echo "calloutd not installed (Debian package mailfromd)"; return 0; fi
	if ! command -v unshare >/dev/null; then echo "unshare not found (util-linux)"; return 0; fi
	if [[ $(id -u) -ne 0 ]]; then echo "needs root (network namespace)"; return 0; fi
	if ! getent passwd mailfromd >/dev/null; then echo "no mailfromd user (Debian package mailfromd)"; return 0; fi
	return 1
}

# Runs SCRIPT --calloutd-inner NS ARGS... inside the namespace and its
# private rig (B must be set); returns SCRIPT's exit status.  The rig's
# own messages go to stderr.
calloutd_reexec() { # SCRIPT ARGS...
	local script=$1 ns rc
	shift
	ns=$(mktemp -d /tmp/cbv-calloutd.XXXXXX) || return 1
	chmod 755 "$ns"
	echo "nameserver 127.0.0.1" >"$ns/resolv.conf"
	unshare -mn bash -c '
		set -e
		ip link set lo up 2>/dev/null || ifconfig lo up
		mount --bind "$1/resolv.conf" /etc/resolv.conf
		export CBV_RIG_PORT=25 CBV_RIG_DNS_PORT=53 CBV_RIG_QUIET=1 B="$2"
		top=$3 script=$4
		shift 4
		exec "$top/tests/rig/rig.sh" run -- bash "$script" --calloutd-inner "$@"
	' inner "$ns" "$B" "$CALLOUTD_TOP" "$script" "$ns" "$@"
	rc=$?
	rm -rf "$ns"
	return $rc
}

# Starts calloutd with t_calloutd.sh's configuration, state in NS; sets
# CALLOUTD_PID, CALLOUTD_UNIX_URL and CALLOUTD_INET_URL (port 3535).
# Fails (log on stderr) if it does not listen within 5 s.
calloutd_start() { # NS
	local ns=$1 i
	mkdir -p "$ns/state" "$ns/sock"
	chown mailfromd "$ns/state" "$ns/sock"
	CALLOUTD_UNIX_URL="unix://$ns/sock/calloutd.sock"
	CALLOUTD_INET_URL="inet://127.0.0.1:3535"
	cat >"$ns/calloutd.conf" <<-CONF
	pidfile "$ns/calloutd.pid";
	state-directory "$ns/state";
	ehlo-domain "verifier.test";
	mail-from-address "<>";
	smtp-timeout {
	  connection 3;
	  initial-response 3;
	  helo 3;
	  mail 3;
	  rcpt 3;
	  rset 3;
	  quit 1;
	};
	server inet {
	  listen "$CALLOUTD_INET_URL";
	};
	server unix {
	  listen "$CALLOUTD_UNIX_URL";
	};
	CONF
	"$CALLOUTD" --config-file="$ns/calloutd.conf" --foreground --stderr >"$ns/calloutd.log" 2>&1 &
	CALLOUTD_PID=$!
	for ((i = 0; i < 50; i++)); do
		[[ -S $ns/sock/calloutd.sock ]] && ss -Hltn | grep -q "127.0.0.1:3535 " && return 0
		sleep 0.1
	done
	head -c 2000 "$ns/calloutd.log" >&2
	return 1
}

calloutd_stop() {
	local i
	[[ -n ${CALLOUTD_PID:-} ]] || return 0
	kill "$CALLOUTD_PID" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$CALLOUTD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$CALLOUTD_PID" 2>/dev/null
	wait "$CALLOUTD_PID" 2>/dev/null
	CALLOUTD_PID=
}
