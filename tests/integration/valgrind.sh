#!/bin/bash
# Runs the rig-backed core suites under valgrind: any leak or memory error
# fails.  Check runs each test in a child process, so children are traced.
set -u
B=${B:-build}
rc=0
for t in check_verify check_dns check_tls; do
	[ -x "$B/tests/$t" ] || continue
	echo "== valgrind $t"
	if ! CK_FORK=no CK_DEFAULT_TIMEOUT=120 valgrind -q --error-exitcode=99 --leak-check=full \
		--show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
		"$B/tests/$t"; then
		echo "valgrind: $t FAILED"
		rc=1
	fi
done
exit $rc
