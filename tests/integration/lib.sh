# shellcheck shell=bash
# tests/integration/lib.sh - what the integration scripts share: result
# lines, expectations, and the rig profile for cbv.conf.  Sourced, never run
# (except `bash tests/integration/lib.sh --selftest`).
#
#   . "$TOP/tests/integration/lib.sh"
#   need_rig                            exit unless inside tests/rig/rig.sh run
#   need_built FILE...                  "not ok" and exit 1 unless each is executable
#   ok NAME / bad NAME [DETAIL]         one result line (DETAIL indented below)
#   check NAME CMD...                   ok if CMD succeeds, else bad with $DETAIL
#   skip WHY                            an "ok - # SKIP WHY" line, not counted
#   expect_run NAME RC REGEX -- CMD...  CMD exits RC and a stdout line matches REGEX
#                                       (CMD's stderr is left in $RUN_ERR)
#   expect_text NAME TEXT REGEX...      every REGEX matches TEXT (see below)
#   matches REGEX TEXT                  status 0 if REGEX matches TEXT (see below)
#   cbv_profile NAME [LINE...]          print an smtp_cbv block: cache = "", LINEs
#   rig_profile [-D] NAME [LINE...]     the same with the rig's DNS, port, deny_networks
#   free_port                           print a free TCP port on 127.0.0.1
#   cbvd_dirs DIR... / cbvd_start CBVD LOG ARGS... / cbvd_stop
#                                       a cbvd in the background (CBVD_PID)
#   summary [LABEL]                     "N passed, M failed"; status 1 on failures
#
# A REGEX is an ERE matched against each line.  A REGEX holding a newline
# must match that many consecutive lines (grep would take each line of it as
# an alternative and pass when any one matches).

T_PASS=${T_PASS:-0} T_FAIL=${T_FAIL:-0}
BAD_LINES=${BAD_LINES:-20} # lines of DETAIL shown under a failure

ok() { T_PASS=$((T_PASS + 1)); echo "ok - $1"; }
bad() {
	T_FAIL=$((T_FAIL + 1))
	echo "not ok - $1"
	[[ -n ${2:-} ]] && printf '%s\n' "$2" | head -n "$BAD_LINES" | sed 's/^/    /'
	return 0
}
check() { local n=$1; shift; if "$@"; then ok "$n"; else bad "$n" "${DETAIL:-}"; fi; }
skip() { echo "ok - # SKIP $1"; }
summary() {
	echo "${1:+$1: }$T_PASS passed, $T_FAIL failed"
	((T_FAIL == 0))
}

need_rig() {
	: "${CBV_RIG_DNS:?run inside tests/rig/rig.sh run}" "${CBV_RIG_PORT:?run inside tests/rig/rig.sh run}"
}
need_built() {
	local f
	for f in "$@"; do
		[[ -x $f ]] || { echo "not ok - $f not built"; echo "0 passed, 1 failed"; exit 1; }
	done
}

# matches REGEX TEXT: status 0 if REGEX matches a line (or, with newlines
# in REGEX, a run of lines) of TEXT.
matches() {
	if [[ $1 == *$'\n'* ]]; then
		RE=$1 perl -0777 -ne 'exit(/$ENV{RE}/m ? 0 : 1)' <<<"$2"
	else
		grep -Eq -- "$1" <<<"$2"
	fi
}

expect_text() {
	local name=$1 text=$2 re
	shift 2
	for re in "$@"; do
		if ! matches "$re" "$text"; then
			bad "$name" "nothing matches /$re/ in:"$'\n'"$text"
			return 0
		fi
	done
	ok "$name"
}

# Runs CMD with stderr in a temporary file, shown on failure and left in
# RUN_ERR for further checks.
expect_run() {
	local name=$1 want_rc=$2 re=$3 out rc errf
	shift 4
	errf=$(mktemp)
	out=$("$@" 2>"$errf")
	rc=$?
	RUN_ERR=$(cat "$errf")
	if ((rc != want_rc)); then
		bad "$name" "exit $rc, want $want_rc; stdout: $out; stderr: $(head -c 500 "$errf")"
	elif ! matches "$re" "$out"; then
		bad "$name" "stdout does not match /$re/: $out"
	else
		ok "$name"
	fi
	rm -f "$errf"
}

# cbv_profile NAME [LINE...]: an smtp_cbv block with no cache (cache = "";
# a LINE "cache = PATH" replaces it: tests never touch the system's cache),
# then each LINE ("timeout = 2s") as given.
cbv_profile() {
	local l cache=1
	printf 'smtp_cbv "%s" {\n' "$1"
	shift
	for l in "$@"; do [[ $l =~ ^[[:space:]]*cache[[:space:]]*= ]] && cache=0; done
	((cache)) && printf '  cache = ""\n'
	for l in "$@"; do printf '  %s\n' "$l"; done
	printf '}\n'
}

# rig_profile [-D] NAME [LINE...]: cbv_profile with the rig's DNS server
# and SMTP port, and loopback allowed (deny_networks = [ ]; -D keeps the
# default list, which refuses the rig).
rig_profile() {
	local deny=('deny_networks = [ ]')
	[[ $1 == -D ]] && { deny=(); shift; }
	cbv_profile "$1" "dns_servers = \"$CBV_RIG_DNS\"" "port = $CBV_RIG_PORT" "${deny[@]}" "${@:2}"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cbvd_dirs DIR...: cbvd drops root (to Debian-exim, else nobody); when we
# are root, each DIR becomes that user's, so that cbvd can unlink its
# socket there at exit.
cbvd_dirs() {
	[[ $(id -u) == 0 ]] || return 0
	if id Debian-exim >/dev/null 2>&1; then chown Debian-exim "$@"; else chown nobody "$@"; fi
}

# cbvd_start CBVD LOG ARGS...: runs CBVD -f ARGS in the background with
# its stderr in LOG, and sets CBVD_PID.  Succeeds once LOG says "ready"
# (5 s at most); fails at once if cbvd exits.
cbvd_start() {
	local cbvd=$1 log=$2 i
	shift 2
	"$cbvd" -f "$@" 2>"$log" &
	CBVD_PID=$!
	for ((i = 0; i < 50; i++)); do
		grep -q ready "$log" 2>/dev/null && return 0
		kill -0 "$CBVD_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# cbvd_stop: SIGTERM to the cbvd cbvd_start started, if any; waits for it.
cbvd_stop() {
	[[ -n ${CBVD_PID:-} ]] || return 0
	kill -TERM "$CBVD_PID" 2>/dev/null
	wait "$CBVD_PID" 2>/dev/null
	CBVD_PID=
}

# bash tests/integration/lib.sh --selftest: each helper once each way.
if [[ ${BASH_SOURCE[0]} == "$0" && ${1:-} == --selftest ]]; then
	out=$( (
		T_PASS=0 T_FAIL=0
		expect_text a $'x\ny\nz' '^y$' '^z$'
		expect_text b $'x\ny\nz' '^x$'$'\n''^z$'
		expect_text c $'x\ny\nz' '^y$'$'\n''^z$'
		expect_run d 3 '^hi$' -- bash -c 'echo hi; exit 3'
		expect_run e 0 '^hi$' -- bash -c 'echo hi; exit 3'
		expect_run f 0 '^hi$' -- bash -c 'echo ho'
		check g true
		DETAIL=why check h false
		CBV_RIG_DNS=127.0.0.1:5353 CBV_RIG_PORT=2525 rig_profile q 'timeout = 2s'
		CBV_RIG_DNS=127.0.0.1:5353 CBV_RIG_PORT=2525 rig_profile -D r
		cbv_profile s 'helo = "x"' '  cache = "/tmp/c"'
		expect_run i 1 '^$' -- bash -c 'echo oops >&2; exit 1'
		check j test "$RUN_ERR" = oops
		summary lib
	) )
	want='ok - a
not ok - b
    nothing matches /^x$
    ^z$/ in:
    x
    y
    z
ok - c
ok - d
not ok - e
    exit 3, want 0; stdout: hi; stderr: 
not ok - f
    stdout does not match /^hi$/: ho
ok - g
not ok - h
    why
smtp_cbv "q" {
  cache = ""
  dns_servers = "127.0.0.1:5353"
  port = 2525
  deny_networks = [ ]
  timeout = 2s
}
smtp_cbv "r" {
  cache = ""
  dns_servers = "127.0.0.1:5353"
  port = 2525
}
smtp_cbv "s" {
  helo = "x"
    cache = "/tmp/c"
}
ok - i
ok - j
lib: 6 passed, 4 failed'
	if [[ $out == "$want" ]]; then
		echo "lib.sh selftest: ok"
	else
		diff <(echo "$want") <(echo "$out")
		exit 1
	fi
fi
