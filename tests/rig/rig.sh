#!/bin/bash
# tests/rig/rig.sh - the loopback test rig (tests/rig/PLAN.md).
#
#   rig.sh start DIR        start dnsmasq, Exim and the fake servers, state in DIR
#   rig.sh stop DIR         stop them, check nothing is left listening
#   rig.sh run -- CMD ...   mktemp state dir, start, run CMD with the rig's
#                           environment, stop, remove the dir (KEEP_RIG=1 keeps
#                           it), exit with CMD's status
#
# Environment in:  B (build dir, default "build": $B/fakesmtp),
#                  CBV_RIG_PORT (SMTP port, default 2525),
#                  CBV_RIG_DNS_PORT (dnsmasq port, default 53535),
#                  CBV_RIG_QUIET=1 (fakesmtp without -v), EXIM (default
#                  /usr/sbin/exim4), KEEP_RIG=1.
# Environment out (run): CBV_RIG_DIR, CBV_RIG_DNS ("127.0.0.1:PORT"),
#                  CBV_RIG_PORT, CBV_RIG_CA (CA PEM), CBV_RIG_CA_DIR (hashed
#                  CA directory), B (absolute).
#
# Everything binds to 127.0.0.0/8 or ::1. Must run as root: Exim's daemon
# needs it to start and to switch to Debian-exim.
set -euo pipefail

RIG_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
B=${B:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
PORT=${CBV_RIG_PORT:-2525}
DNS_PORT=${CBV_RIG_DNS_PORT:-53535}
EXIM=${EXIM:-/usr/sbin/exim4}
EXIM_USER=Debian-exim
WAIT_SECS=10
RIG_STARTED=0

EXIM_ADDRS=(127.0.0.10 127.0.0.11 127.0.0.12 127.0.0.13 ::1)
# address=scenario, the table in PLAN.md
FAKES=(
	127.0.0.20=tarpit 127.0.0.21=drip 127.0.0.22=multiline
	127.0.0.23=longline 127.0.0.24=garbage 127.0.0.25=earlyclose
	127.0.0.26=mid421 127.0.0.27=greet554 127.0.0.28=nullsender
	127.0.0.29=policy 127.0.0.30=fast
	127.0.0.31=tlsclose
	127.0.0.40=sender518 127.0.0.41=mail530 127.0.0.42=bigreply 127.0.0.43=greet421
	127.0.0.44=mixgreet 127.0.0.45=chatty 127.0.0.46=rcptmix
	127.0.0.60=catchall 127.0.0.65=counting 127.0.0.66=counting 127.0.0.67=counting
	127.0.0.68=slowcount
)

say() { printf 'rig: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
	cat >&2 <<-EOF
	usage: rig.sh start DIR | stop DIR | run -- CMD [ARGS...]
	EOF
	exit 2
}

# "cmd:package" pairs; every missing one is named with its Debian package.
check_commands() {
	local missing=() pair cmd pkg
	for pair in "$EXIM:exim4-daemon-heavy" dnsmasq:dnsmasq-base openssl:openssl \
		ss:iproute2 dig:bind9-dnsutils setsid:util-linux runuser:util-linux \
		ps:procps pgrep:procps pkill:procps nm:binutils swaks:swaks python3:python3; do
		cmd=${pair%:*} pkg=${pair##*:}
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd (Debian package $pkg)")
	done
	if ((${#missing[@]})); then
		die "missing commands: ${missing[*]}"
	fi
	[[ -x $B/fakesmtp ]] || die "$B/fakesmtp not built (make build/fakesmtp)"
	[[ -r $RIG_SRC/dnsmasq.conf ]] || die "$RIG_SRC/dnsmasq.conf missing"
	[[ -r $RIG_SRC/exim.conf ]] || die "$RIG_SRC/exim.conf missing"
	((EUID == 0)) || die "must run as root (Exim's daemon starts as root, then runs as $EXIM_USER)"
	getent passwd "$EXIM_USER" >/dev/null || die "no user $EXIM_USER (Debian package exim4-base)"
	check_port "$PORT" CBV_RIG_PORT
	check_port "$DNS_PORT" CBV_RIG_DNS_PORT
}

check_port() {
	if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then die "$2=$1 is not a port"; fi
}

# Those of the rig's endpoints (TCP, and the DNS port as "ADDR:PORT/udp")
# that something listens on now, one a line. Two ss calls in all.
rig_listening() {
	local -A up=()
	local ep
	while read -r ep; do up[$ep]=1; done < <(ss -Hltn 2>/dev/null | awk '{print $4}')
	while read -r ep; do up[$ep/udp]=1; done < <(ss -Hlun 2>/dev/null | awk '{print $4}')
	while read -r ep; do
		[[ -n ${up[$ep]:-} ]] && echo "$ep"
	done < <(rig_endpoints)
	return 0
}

ss_addr() { # ADDR PORT -> ss notation
	if [[ $1 == *:* ]]; then printf '[%s]:%s' "$1" "$2"; else printf '%s:%s' "$1" "$2"; fi
}

# Every TCP/UDP endpoint the rig owns, in ss notation.
rig_endpoints() {
	local a f
	for a in "${EXIM_ADDRS[@]}"; do ss_addr "$a" "$PORT"; echo; done
	for f in "${FAKES[@]}"; do ss_addr "${f%%=*}" "$PORT"; echo; done
	echo "127.0.0.1:$DNS_PORT/udp"
}

# pid from a pidfile if that process is alive (zombies count as dead) and is
# COMM; nothing otherwise, so a stale file never gets a stranger killed.
live_pid() {
	local file=$1 comm=$2 pid state
	[[ -s $file ]] || return 1
	read -r pid <"$file" || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$comm" ]] || return 1
	state=$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null) || return 1
	[[ $state != Z && $state != X ]] || return 1
	echo "$pid"
}

show_logs() {
	local dir=$1 f
	for f in "$dir"/dnsmasq.log "$dir"/dnsmasq.start.log "$dir"/exim.start.log \
		"$dir"/log/mainlog "$dir"/log/paniclog "$dir"/fakesmtp.log; do
		[[ -s $f ]] || continue
		say "---- $f (last 30 lines)"
		tail -n 30 "$f" >&2
	done
}

make_certs() {
	local t=$1/tls
	mkdir -p "$t/ca.d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 \
		-keyout "$t/ca.key" -out "$t/ca.pem" -subj "/CN=exim-cbv test rig CA" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>"$t/openssl.log" ||
		{ cat "$t/openssl.log" >&2; die "openssl: CA"; }
	cat >"$t/server.ext" <<-EOF
	basicConstraints = critical,CA:FALSE
	keyUsage = critical,digitalSignature,keyEncipherment
	extendedKeyUsage = serverAuth
	subjectAltName = DNS:mx.exim.test,DNS:mx.tls.test,DNS:mx1.grey.test,DNS:mx2.grey.test,DNS:mx.two.test,DNS:implicit.test,DNS:exim.test,DNS:tls.test,DNS:grey.test,DNS:two.test,IP:127.0.0.10,IP:127.0.0.11,IP:127.0.0.12,IP:::1
	EOF
	if ! openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$t/server.key" \
		-out "$t/server.csr" -subj "/CN=mx.exim.test" 2>>"$t/openssl.log" ||
		! openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
			-CAcreateserial -days 30 -sha256 -extfile "$t/server.ext" \
			-out "$t/server.pem" 2>>"$t/openssl.log"; then
		cat "$t/openssl.log" >&2
		die "openssl: server certificate"
	fi
	cp "$t/ca.pem" "$t/ca.d/"
	openssl rehash "$t/ca.d" 2>>"$t/openssl.log" || die "openssl rehash"
	# Exim reads the key as Debian-exim in its connection processes.
	chgrp "$EXIM_USER" "$t/server.key"
	chmod 640 "$t/server.key"
	chmod 600 "$t/ca.key"
}

start_dns() {
	local dir=$1
	# The command line given at the top of dnsmasq.conf.
	if ! dnsmasq --conf-file="$RIG_SRC/dnsmasq.conf" --port="$DNS_PORT" \
		--listen-address=127.0.0.1 --bind-interfaces \
		--pid-file="$dir/dnsmasq.pid" --log-facility="$dir/dnsmasq.log" \
		>"$dir/dnsmasq.start.log" 2>&1; then
		cat "$dir/dnsmasq.start.log" >&2
		return 1
	fi
}

start_exim() {
	local dir=$1
	# A copy in DIR: the delivery re-exec runs as Debian-exim and must be able
	# to read the file wherever the source tree lives.
	cp "$RIG_SRC/exim.conf" "$dir/exim.conf"
	chmod 644 "$dir/exim.conf"
	"$EXIM" -C "$dir/exim.conf" -DRIG_DIR="$dir" -DRIG_PORT="$PORT" \
		-DRIG_CERT="$dir/tls/server.pem" -DRIG_KEY="$dir/tls/server.key" \
		-bd -oP "$dir/exim.pid" >"$dir/exim.start.log" 2>&1 || {
		cat "$dir/exim.start.log" >&2
		return 1
	}
}

start_fakes() {
	local dir=$1 f args=() v=-v
	[[ ${CBV_RIG_QUIET:-0} == 1 ]] && v=
	for f in "${FAKES[@]}"; do args+=("${f%%=*}:$PORT=${f#*=}"); done
	# setsid: its own session, so a terminal's ^C to the test run does not
	# take it down behind the rig's back; stop() ends it by pid.
	setsid "$B/fakesmtp" $v -p "$dir/fakesmtp.pid" -r "$dir" "${args[@]}" \
		</dev/null >>"$dir/fakesmtp.log" 2>&1 &
}

# Bounded wait until every listener is up and DNS answers.
wait_ready() {
	local dir=$1 i ep missing ans dead up
	for ((i = 0; i < WAIT_SECS * 10; i++)); do
		missing=()
		up=$(rig_listening)
		while read -r ep; do
			[[ $'\n'$up$'\n' == *$'\n'"$ep"$'\n'* ]] || missing+=("$ep")
		done < <(rig_endpoints)
		if ((${#missing[@]} == 0)); then
			ans=$(dig +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 MX exim.test 2>&1) || true
			if [[ $ans == "10 mx.exim.test." ]]; then
				return 0
			fi
			missing=("dnsmasq answer (MX exim.test gave '${ans}')")
		fi
		# A process that died will not come up: no point waiting. (Exim's
		# daemon writes its pid file only once it is listening: grace.)
		if ((i >= 20)); then
			dead=()
			live_pid "$dir/dnsmasq.pid" dnsmasq >/dev/null || dead+=(dnsmasq)
			live_pid "$dir/exim.pid" exim4 >/dev/null || dead+=(exim4)
			live_pid "$dir/fakesmtp.pid" fakesmtp >/dev/null || dead+=(fakesmtp)
			if ((${#dead[@]})); then
				missing+=("(not running: ${dead[*]})")
				break
			fi
		fi
		sleep 0.1
	done
	say "not ready after ${WAIT_SECS}s: ${missing[*]}"
	return 1
}

rig_start() {
	local dir=$1
	check_commands
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if live_pid "$dir/exim.pid" exim4 >/dev/null || live_pid "$dir/dnsmasq.pid" dnsmasq >/dev/null ||
		live_pid "$dir/fakesmtp.pid" fakesmtp >/dev/null; then
		die "a rig is already running in $dir"
	fi
	local busy
	busy=$(rig_listening)
	[[ -z $busy ]] || die "already in use: ${busy//$'\n'/ } (another rig? set CBV_RIG_PORT/CBV_RIG_DNS_PORT)"
	RIG_STARTED=1 # from here on, a failure or signal must stop what runs

	# Exim's processes run as Debian-exim: they must reach DIR and own what
	# they write. chmod 755: mktemp made it 700.
	chmod 755 "$dir"
	mkdir -p "$dir/spool" "$dir/log" "$dir/mail"
	chown "$EXIM_USER:$EXIM_USER" "$dir/spool" "$dir/log" "$dir/mail"
	runuser -u "$EXIM_USER" -- test -x "$dir/spool" ||
		die "$dir is not reachable by $EXIM_USER (a parent directory is closed); use a directory under /tmp"

	make_certs "$dir"
	local ok=1
	start_dns "$dir" || { say "dnsmasq failed to start"; ok=0; }
	((ok)) && { start_exim "$dir" || { say "exim failed to start"; ok=0; }; }
	((ok)) && start_fakes "$dir"
	if ((ok)) && wait_ready "$dir"; then
		say "up in $dir: smtp port $PORT, dns 127.0.0.1:$DNS_PORT"
		return 0
	fi
	show_logs "$dir"
	rig_stop "$dir" || true
	die "rig failed to start (state in $dir)"
}

# Signal a process (or its process group when it leads one: Exim's
# connection and delivery processes share the daemon's group) and wait.
stop_one() {
	local file=$1 comm=$2 pid i
	pid=$(live_pid "$file" "$comm") || { rm -f "$file"; return 0; }
	if [[ $(awk '{print $5}' /proc/"$pid"/stat 2>/dev/null) == "$pid" ]]; then
		kill -TERM -- "-$pid" 2>/dev/null || true
	else
		kill -TERM "$pid" 2>/dev/null || true
	fi
	for ((i = 0; i < 50; i++)); do
		live_pid "$file" "$comm" >/dev/null || break
		sleep 0.1
	done
	if live_pid "$file" "$comm" >/dev/null; then
		say "$comm ($pid) ignored SIGTERM, killing"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$file"
}

rig_stop() {
	local dir=$1 left i
	[[ -d $dir ]] || die "no such directory $dir"
	stop_one "$dir/fakesmtp.pid" fakesmtp
	stop_one "$dir/exim.pid" exim4
	# Delivery processes re-exec Exim with our -C in a session of their own,
	# out of the daemon's process group: end them too, or one may write its
	# log into DIR after DIR is gone.
	for ((i = 0; i < 50; i++)); do
		pkill -TERM -f -- "-C $dir/exim.conf " 2>/dev/null || break
		sleep 0.1
	done
	stop_one "$dir/dnsmasq.pid" dnsmasq
	# Listening sockets close with their process; give the kernel a moment.
	for ((i = 0; i < 20; i++)); do
		left=$(rig_listening)
		[[ -z $left ]] && break
		sleep 0.1
	done
	if [[ -n $left ]]; then
		say "error: still listening after stop: ${left//$'\n'/ }"
		ss -Hlnptu >&2 || true
		return 1
	fi
	# The paniclog always holds Exim's note about -C (see exim.conf); anything
	# else in it is worth a look.
	if [[ -s $dir/log/paniclog ]] && grep -qv 'lost privilege for using -C option' "$dir/log/paniclog"; then
		say "warning: Exim paniclog:"
		grep -v 'lost privilege for using -C option' "$dir/log/paniclog" >&2 || true
	fi
	return 0
}

# PID and all its descendants, parents first.
proc_tree() {
	local kid
	echo "$1"
	for kid in $(ps -o pid= --ppid "$1" 2>/dev/null); do proc_tree "$kid"; done
}

# End what rig_run started for CMD (by pid, never by name), bounded.
stop_cmd() {
	local pid=$1 pids i
	pids=$(proc_tree "$pid")
	# shellcheck disable=SC2086  # a list of pids
	kill -TERM $pids 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
}

rig_run() {
	(($# > 0)) || usage
	local dir rc=0 cmd_pid=
	dir=$(mktemp -d /tmp/cbv-rig.XXXXXX)

	# shellcheck disable=SC2317  # called from the EXIT trap
	cleanup() {
		local st=$?
		trap - EXIT INT TERM HUP
		if [[ -n $cmd_pid ]]; then stop_cmd "$cmd_pid"; fi
		if ((RIG_STARTED)); then rig_stop "$dir" || st=1; fi
		if [[ ${KEEP_RIG:-0} == 1 ]]; then
			say "state kept in $dir"
		else
			rm -rf "$dir"
		fi
		exit "$st"
	}
	trap cleanup EXIT
	trap 'say "interrupted"; exit 130' INT
	trap 'say "terminated"; exit 143' TERM HUP

	rig_start "$dir"
	export CBV_RIG_DIR=$dir CBV_RIG_DNS=127.0.0.1:$DNS_PORT CBV_RIG_PORT=$PORT \
		CBV_RIG_CA=$dir/tls/ca.pem CBV_RIG_CA_DIR=$dir/tls/ca.d B

	# In the background so a signal to us is handled at once. A background
	# job of a script gets /dev/null as stdin and ignores SIGINT/SIGQUIT:
	# pass stdin on and restore the signals, so ^C reaches CMD as usual.
	{ exec 3<&0; } 2>/dev/null || exec 3</dev/null
	set +e
	(
		trap - INT QUIT
		exec "$@"
	) <&3 3<&- &
	cmd_pid=$!
	wait "$cmd_pid"
	rc=$?
	set -e
	cmd_pid=
	exec 3<&-
	exit "$rc"
}

case ${1:-} in
start) (($# == 2)) || usage; rig_start "$2" ;;
stop) (($# == 2)) || usage; rig_stop "$2" ;;
run)
	shift
	[[ ${1:-} == -- ]] && shift
	rig_run "$@"
	;;
*) usage ;;
esac
