# shellcheck shell=bash
# tests/integration/exim/lib.sh - shared by t_exim_*.sh, demo.sh and
# bench/exim_bench.sh: a private "front" Exim (tests/integration/exim/exim.conf
# with the exim-conf drop-ins) calling cbv.so, inside the loopback rig.
#
#   . tests/integration/exim/lib.sh
#   front_setup            # T (temp dir), cbv.so, cbv.conf for the rig
#   front -be '${dlfunc{...}}'      front -DFRONT_MAIL=1 -bs < session
#   front_daemon_start [-D...] / front_daemon_stop
#   evil_start 'GREETING' / evil_stop
#   mark / newlog          the front's mainlog lines written since the mark
#   be EXPANSION / be_lines EXPANSION...    exim -be: $out, $err, $rc
#   be_expect NAME EXPANSION WANT / be_error NAME EXPANSION ERE
#
# ok, bad, check, summary, expect_text, rig_profile... come from
# tests/integration/lib.sh, sourced here.
#
# Needs the rig's environment (CBV_RIG_DNS, CBV_RIG_PORT), root, and B.
# Everything listens on loopback: the front daemon on 127.0.0.61, the
# hostile greeter on 127.0.0.62, both on CBV_RIG_PORT (unique per rig).

TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
EXIM=${EXIM:-/usr/sbin/exim4}
FRONT_IP=127.0.0.61
EVIL_IP=127.0.0.62
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Exits 0 with a SKIP line when cbv.so cannot be dlopen()ed into Exim (the
# sanitizer build: libasan must be loaded first, which Exim is not).
skip_if_sanitized() {
	if [[ ! -e $B/cbv.so ]]; then
		skip "$B/cbv.so not built"
		echo "0 passed, 0 failed"
		exit 0
	fi
	if nm -D "$B/cbv.so" 2>/dev/null | grep -q '__asan_\|__ubsan_'; then
		skip "sanitizer build: cbv.so cannot be loaded into Exim"
		echo "0 passed, 0 failed"
		exit 0
	fi
}

# Writes a cbv.conf for the rig into $1.
rig_cbv_conf() {
	{
		echo "# rig profile: the rig's DNS and port, loopback allowed"
		rig_profile default 'timeout = 10s' 'command_timeout = 5s'
		rig_profile quick 'timeout = 2s'
		rig_profile mapped 'map = [ "^(.+)\.mapped\.example$" = "$1.test" ]'
	} >"$1"
	chmod 644 "$1"
}

# Creates T: config, module and conf copies readable by Debian-exim (the
# -bs process and the daemon's children run as that user), spool, logs.
front_setup() {
	need_rig
	T=$(mktemp -d /tmp/cbv-front.XXXXXX)
	chmod 755 "$T"
	mkdir -p "$T/spool" "$T/log" "$T/src"
	chown Debian-exim:Debian-exim "$T/spool" "$T/log"
	cp "$B/cbv.so" "$T/cbv.so"
	cp "$TOP/tests/integration/exim/exim.conf" "$T/exim.conf"
	cp -r "$TOP/exim-conf/." "$T/src/"
	chmod -R a+rX "$T/src"
	chmod 644 "$T/cbv.so" "$T/exim.conf"
	rig_cbv_conf "$T/cbv.conf"
	SO=$T/cbv.so
	FRONT_ARGS=(-C "$T/exim.conf" -DFRONT_DIR="$T" -DFRONT_SRC="$T/src" -DCBV_SO="$SO"
		-DFRONT_IP="$FRONT_IP" -DFRONT_PORT="$CBV_RIG_PORT" -DRIG_PORT="$CBV_RIG_PORT")
}

front() { "$EXIM" "${FRONT_ARGS[@]}" "$@"; }

# mark, then newlog: the lines of the front's mainlog written since.
mark() { MARK=$( (wc -l <"$T/log/mainlog") 2>/dev/null || echo 0); }
newlog() { tail -n +"$((MARK + 1))" "$T/log/mainlog" 2>/dev/null; }

# be EXPANSION: one exim -be expansion (read from stdin, so long lines
# pass; Exim prompts "> "; one process: callout descriptors live as long
# as it does); the result in $out, stderr in $err, rc 1 when the
# expansion failed ("Failed: ..." in out).
be() {
	out=$(printf '%s\n' "$1" | front -be 2>"$T/be.err")
	out=${out#> }
	out=${out%$'\n'> }
	out=${out%$'\n'>}
	rc=0
	[[ $out == Failed:* ]] && rc=1
	err=$(cat "$T/be.err")
}
# be_lines EXPANSION...: several expansions in one exim -be process (so
# an expansion may fail and the next still see the descriptors); $out is
# their results joined with "|" (a failure shows as "Failed: ...").
be_lines() {
	local lines=() l
	mapfile -t lines < <(printf '%s\n' "$@" | front -be 2>"$T/be.err")
	out=
	for l in "${lines[@]:0:$#}"; do out+="${l#> }|"; done
	out=${out%|}
	err=$(cat "$T/be.err")
}
# be_expect NAME EXPANSION WANT: the expansion succeeds with exactly WANT.
be_expect() {
	be "$2"
	if [[ $rc -eq 0 && $out == "$3" ]]; then ok "$1"; else bad "$1" "want: $3"$'\n'"rc=$rc out=$out err=$err"; fi
}
# be_error NAME EXPANSION ERE: the expansion fails (ERROR, never a crash),
# and its message matches.
be_error() {
	be "$2"
	if [[ $rc -ne 0 ]] && matches "$3" "$out$err" && ! grep -qi 'segmentation\|signal' <<<"$err"; then
		ok "$1"
	else
		bad "$1" "want ERROR /$3/"$'\n'"rc=$rc out=$out err=$err"
	fi
}

# One SMTP session over -bs; lines given as arguments, CRLF added.
# stdout: Exim's replies.
bs_session() { # [-Dmacro...] -- LINE...
	local defs=()
	while [[ $# -gt 0 && $1 != -- ]]; do defs+=("$1"); shift; done
	shift
	printf '%s\r\n' "$@" | front "${defs[@]}" -bs 2>&1 | tr -d '\r'
}

front_daemon_start() { # [-Dmacro...]
	front "$@" -bd -oP "$T/exim.pid" || return 1
	local i
	for ((i = 0; i < 50; i++)); do
		ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qx "$FRONT_IP:$CBV_RIG_PORT" && return 0
		sleep 0.1
	done
	echo "front daemon did not start" >&2
	return 1
}

front_daemon_stop() {
	local pid i
	[[ -s $T/exim.pid ]] || return 0
	read -r pid <"$T/exim.pid"
	if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == exim4 ]]; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			[[ -e /proc/$pid ]] || break
			sleep 0.1
		done
	fi
	rm -f "$T/exim.pid"
}

evil_start() { # GREETING
	if [[ ! -x $T/evilsmtp ]]; then
		cc -std=c11 -O2 -o "$T/evilsmtp" "$TOP/tests/integration/exim/evilsmtp.c" || return 1
	fi
	: >"$T/evil.log"
	setsid "$T/evilsmtp" "$EVIL_IP:$CBV_RIG_PORT" "$1" "$T/evil.log" "$T/evil.pid" \
		</dev/null >>"$T/evil.out" 2>&1 &
	local i
	for ((i = 0; i < 50; i++)); do
		ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qx "$EVIL_IP:$CBV_RIG_PORT" && return 0
		sleep 0.1
	done
	echo "evilsmtp did not start: $(cat "$T/evil.out")" >&2
	return 1
}

evil_stop() {
	local pid
	[[ -s $T/evil.pid ]] || return 0
	read -r pid <"$T/evil.pid"
	if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == evilsmtp ]]; then
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -f "$T/evil.pid"
}

front_cleanup() {
	front_daemon_stop
	evil_stop
	[[ ${KEEP_FRONT:-0} == 1 ]] && { echo "# front state kept in $T" >&2; return 0; }
	[[ -n ${T:-} && $T == /tmp/cbv-front.* ]] && rm -rf "$T"
}
