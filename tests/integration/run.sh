#!/bin/bash
# tests/integration/run.sh - integration entry point, run inside the rig:
#
#   B=build tests/rig/rig.sh run -- tests/integration/run.sh     (make integration)
#
# Runs the unit suites that need the rig (those built; the others are
# skipped), lib.sh's selftest, then every tests/integration/t_*.sh. Each
# gets a time limit (CBV_TEST_TIMEOUT seconds, default 300). The last line is
# "N passed, N failed"; the exit status is non-zero on any failure.
set -u

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP" || exit 1
B=${B:-build}
LIMIT=${CBV_TEST_TIMEOUT:-300}

# Check suites that talk to the rig's DNS or SMTP servers.
RIG_SUITES=(check_dns check_session check_verify check_tls check_verify_cache)

if [[ -z ${CBV_RIG_DIR:-} || -z ${CBV_RIG_DNS:-} || -z ${CBV_RIG_PORT:-} ]]; then
	echo "run.sh: no rig (CBV_RIG_DIR/CBV_RIG_DNS/CBV_RIG_PORT unset);" \
		"use: B=$B tests/rig/rig.sh run -- $0" >&2
	exit 2
fi

passed=0 failed=0 failures=()

# Every test profile sets its own cache (or none): a test that falls back
# to the default path would write the host's real cache.  Caught below.
SYS_CACHE=/var/spool/exim4/db/cbv
sys_cache_before=0
[[ -e $SYS_CACHE ]] && sys_cache_before=1

run_one() { # NAME CMD...
	local name=$1 rc
	shift
	echo "== $name"
	timeout --kill-after=10 "$LIMIT" "$@"
	rc=$?
	if ((rc == 0)); then
		passed=$((passed + 1))
		echo "-- PASS $name"
	else
		failed=$((failed + 1))
		failures+=("$name")
		if ((rc == 124 || rc == 137)); then
			echo "-- FAIL $name (timed out after ${LIMIT}s)"
		else
			echo "-- FAIL $name (exit $rc)"
		fi
	fi
}

for s in "${RIG_SUITES[@]}"; do
	if [[ -x $B/tests/$s ]]; then
		run_one "$s" "$B/tests/$s"
	else
		echo "-- skip $s (not built)"
	fi
done

# The helpers every t_*.sh shares (no rig needed).
run_one lib.sh bash tests/integration/lib.sh --selftest

for t in tests/integration/t_*.sh; do
	[[ -e $t ]] || continue
	run_one "${t##*/}" bash "$t"
done

if ((!sys_cache_before)) && [[ -e $SYS_CACHE ]]; then
	echo "-- FAIL hermetic: a test created the default cache $SYS_CACHE (a profile without cache = ...)"
	failed=$((failed + 1))
	failures+=("hermetic")
fi
if ((failed)); then
	echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
