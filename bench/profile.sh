#!/bin/bash
# bench/profile.sh - where each microsecond of a verification goes.
# Run inside the loopback rig (root: Exim, perf):
#   B=build tests/rig/rig.sh run -- bench/profile.sh
# Prints tables; asserts nothing.
#
#  1. phases of one verification in a warm process ($B/bench/profile -n):
#     wall, CPU of the client (user+sys) and wait (wall - CPU), per phase
#  2. the same in a cold process (profile -1, PROFILE_COLD runs, medians):
#     what a new process pays once (OpenSSL, c-ares, first page faults);
#     for STARTTLS also after cbv_tls_preload() (profile -1P: what is left
#     in a process forked by a daemon that ran cbv.so's preload)
#  3. per-process steps alone: cbv_config_load() of the front's cbv.conf
#  4. through Exim (exim -bhc, 5 RCPTs a session): the dlopen() of cbv.so
#     and each smtp_callback_verify call, timed by an LD_PRELOAD shim
#     built here (dlopen/dlsym wrappers): the first call carries the
#     per-process setup, the later ones are the steady state
#  5. syscalls per verification (strace -c), warm
#  6. perf (Debian linux-perf), when installed: CPU by shared object, and
#     the handshake's CPU split by OpenSSL entry point
#  7. the Exim MX's own CPU per connection (perf stat on the rig's Exim
#     daemon): our client against Exim's built-in, plain and STARTTLS
#
# Environment: PROFILE_N (warm runs, default 200), PROFILE_COLD (cold
# processes, default 15), PROFILE_CASES (default: all), PROFILE_PERF=0
# skips perf.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
B=${B:-build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
N=${PROFILE_N:-200}
NC=${PROFILE_COLD:-15}
CASES=${PROFILE_CASES:-fast-literal fast exim exim-tls exim-tls-verify}
P=$B/bench/profile
[[ -x $P ]] || { echo "profile.sh: $P not built (make)"; exit 1; }

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "== 1. warm process: $N verifications per case, medians per phase (us)"
for c in $CASES; do
	"$P" -n "$N" "$c" || echo "profile.sh: case $c failed"
	echo
done

echo "== 2. cold process: $NC fresh processes per case, one verification each, medians (us)"
W=$(mktemp -d /tmp/cbv-profile.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
# -1P: the same cold process after cbv_tls_preload(), as a connection
# process forked by an Exim daemon that ran cbv.so's preload
for mc in $(for c in $CASES; do echo "-1:$c"; [[ $c == exim-tls* ]] && echo "-1P:$c"; done); do
	m=${mc%%:*} c=${mc#*:}
	: >"$W/cold"
	for ((i = 0; i < NC; i++)); do
		"$P" "$m" "$c" | awk -v r="$i" 'NR > 2 { print r, NR - 2, $0 }' >>"$W/cold"
	done
	if [[ $m == -1P ]]; then echo "# $c, cold, after cbv_tls_preload()"; else echo "# $c, cold"; fi
	printf '%-28s %10s %10s %10s\n' "phase (from > to)" "wall us" "cpu us" "wait us"
	# rows by position (a label such as ">EHLO > <250" comes twice with
	# STARTTLS); the median of each column over the runs
	rows=$(awk '{ if ($2 > n) n = $2 } END { print n + 0 }' "$W/cold")
	for ((row = 1; row <= rows; row++)); do
		l=$(awk -v k="$row" '$2 == k { $1 = $2 = ""; sub(/^ +/, ""); sub(/ +[0-9.]+ +[0-9.]+ +[0-9.]+$/, ""); print; exit }' "$W/cold")
		for col in 1 2 3; do
			awk -v k="$row" -v c="$col" '$2 == k { print $(NF - 3 + c) }' "$W/cold" | median >"$W/m$col"
		done
		printf '%-28s %10.1f %10.1f %10.1f\n' "$l" "$(<"$W/m1")" "$(<"$W/m2")" "$(<"$W/m3")"
	done
	echo
done

echo "== 3. per-process steps alone (us, median of $NC processes)"
. tests/integration/exim/lib.sh
front_setup
trap 'front_cleanup; rm -rf "$W"' EXIT
for ((i = 0; i < NC; i++)); do "$P" -c "$T/cbv.conf"; done >"$W/conf"
printf '%-44s wall %8.1f  cpu %8.1f\n' "cbv_config_load() of the front's cbv.conf" \
	"$(awk '{ print $2 }' "$W/conf" | median)" "$(awk '{ print $3 }' "$W/conf" | median)"
echo

echo "== 4. through Exim: exim -bhc, 5 RCPTs a session, $NC sessions per case (us, medians)"
# The shim writes to a fixed file: Exim clears its environment.
cat >"$W/shim.c" <<EOF
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
typedef int dlfn(unsigned char **, int, unsigned char **);
static dlfn *real_fn;
static int calls;
static double us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}
static void out(const char *what, int n, double w, double c)
{
	FILE *f = fopen("$W/shim.out", "a");
	if (f != NULL) {
		fprintf(f, "%s%d %.1f %.1f\n", what, n, w, c);
		fclose(f);
	}
}
static int wrap(unsigned char **y, int argc, unsigned char **argv)
{
	double w = us(CLOCK_MONOTONIC), c = us(CLOCK_PROCESS_CPUTIME_ID);
	int rc = real_fn(y, argc, argv);
	out("call", ++calls, us(CLOCK_MONOTONIC) - w, us(CLOCK_PROCESS_CPUTIME_ID) - c);
	return rc;
}
void *dlopen(const char *file, int mode)
{
	static void *(*real)(const char *, int);
	double w = us(CLOCK_MONOTONIC), c = us(CLOCK_PROCESS_CPUTIME_ID);
	void *h;
	if (real == NULL)
		real = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
	h = real(file, mode);
	if (file != NULL && strstr(file, "cbv.so") != NULL)
		out("dlopen", 0, us(CLOCK_MONOTONIC) - w, us(CLOCK_PROCESS_CPUTIME_ID) - c);
	return h;
}
void *dlsym(void *h, const char *name)
{
	static void *(*real)(void *, const char *);
	void *f;
	if (real == NULL)
		real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (real == NULL)
		real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
	f = real(h, name);
	if (f != NULL && strcmp(name, "smtp_callback_verify") == 0) {
		real_fn = (dlfn *)f;
		return (void *)wrap;
	}
	return f;
}
EOF
if ! cc -O2 -shared -fPIC -o "$W/shim.so" "$W/shim.c"; then
	echo "profile.sh: cannot build the shim; part 4 skipped"
else
	printf '%-34s %10s %10s %10s %10s %10s %10s\n' "case" "dlopen" "(cpu)" "1st call" "(cpu)" \
		"2nd-5th" "(cpu)"
	for spec in "fast MTA, plain|x@fast.test|starttls=never" \
		"Exim MX, plain|alice@exim.test|starttls=never" \
		"Exim MX, STARTTLS|alice@exim.test|starttls=opportunistic"; do
		IFS='|' read -r label rcpt opts <<<"$spec"
		: >"$W/shim.out"
		chmod 666 "$W/shim.out"
		cmds='HELO bench.test\r\nMAIL FROM:<>\r\n'
		for ((k = 0; k < 5; k++)); do cmds+="RCPT TO:<$rcpt>\\r\\n"; done
		for ((i = 0; i < NC; i++)); do
			printf "${cmds}QUIT\\r\\n" |
				LD_PRELOAD=$W/shim.so front -DFRONT_RCPT=1 -DCBV_NO_SETVARS=1 \
					"-DCBV_RECIPIENT_OPTIONS=timeout=5s command_timeout=5s $opts" \
					-bhc 127.0.0.1 >/dev/null 2>&1
		done
		col() { awk -v p="$1" -v c="$2" '$1 ~ p { print $c }' "$W/shim.out" | median; }
		printf '%-34s %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f\n' "$label" \
			"$(col '^dlopen' 2)" "$(col '^dlopen' 3)" "$(col '^call1$' 2)" "$(col '^call1$' 3)" \
			"$(col '^call[2-5]$' 2)" "$(col '^call[2-5]$' 3)"
	done
	echo "(per process: dlopen + (1st call - later call); the later calls are the steady state)"
fi
echo

echo "== 5. syscalls per warm verification (strace -c -f, 200 verifications)"
if command -v strace >/dev/null; then
	for c in fast-literal exim-tls; do
		strace -f -c -o "$W/strace.$c" "$P" -l 200 "$c" >/dev/null 2>&1
		echo "# $c"
		# rows: % seconds usecs/call calls [errors] syscall; process setup is
		# spread over the 200 (fractions); clock_gettime is profile's own
		# CPU clock (CLOCK_PROCESS_CPUTIME_ID is a real system call)
		awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { printf "  %-16s %6.1f\n", $NF, $4 / 200; tot += $4 }
		     END { printf "  %-16s %6.1f\n", "(all)", tot / 200 }' "$W/strace.$c" | sort -k2 -rn | head -16
	done
else
	echo "(strace not installed: skipped)"
fi
echo

echo "== 6. perf: CPU of a warm verification by shared object (percent of samples)"
if [[ ${PROFILE_PERF:-1} != 0 ]] && command -v perf >/dev/null; then
	for c in fast-literal exim-tls; do
		perf record -q -F 10000 --call-graph dwarf,32768 -o "$W/perf.$c" "$P" -l 150 "$c" \
			>/dev/null 2>&1
		echo "# $c"
		perf report -i "$W/perf.$c" --no-children --sort dso --stdio -g none 2>/dev/null |
			grep -v '^#' | grep -v '^$' | head -8
	done
	echo "# exim-tls: share of the handshake's samples (cbv_tls_handshake) under each entry point"
	perf script -i "$W/perf.exim-tls" -F comm,ip,sym 2>/dev/null >"$W/stacks"
	/usr/bin/python3 - "$W/stacks" <<'PY'
import collections, sys
keys = ["ASN1_item_d2i_ex", "OSSL_DECODER_CTX_new_for_pkey", "EVP_KEYMGMT", "EVP_DigestVerify",
        "EVP_PKEY_generate", "EVP_PKEY_derive", "X509_verify_cert", "EVP_Digest", "HMAC",
        "EVP_CipherInit", "EVP_MD_fetch", "do_syscall_64", "ERR_"]
samples, cur = [], None
for line in open(sys.argv[1]):
    if not line.strip():
        if cur is not None:
            samples.append(cur)
        cur = None
    elif not line[0].isspace():
        if cur is not None:
            samples.append(cur)
        cur = []
    else:
        parts = line.split(None, 1)
        cur.append(parts[1].strip() if len(parts) > 1 else "?")
if cur:
    samples.append(cur)
hs = [s for s in samples if any(f.startswith("cbv_tls_handshake") for f in s)]
tot = [s for s in samples if any(f.startswith("cbv_verify") for f in s)]
print("  handshake: %d of %d samples in cbv_verify (%.0f%%)" % (len(hs), len(tot), 100.0 * len(hs) / max(1, len(tot))))
c = collections.Counter()
for s in hs:
    c.update({k for f in s for k in keys if f.startswith(k)})
for k, v in c.most_common():
    print("  %-32s %5.1f%%" % (k, 100.0 * v / max(1, len(hs))))
PY
else
	echo "(perf not installed or PROFILE_PERF=0: skipped)"
fi
echo

echo "== 7. the Exim MX's own CPU per connection (perf stat on the rig's Exim daemon,"
echo "   following the connection processes it forks), cbv's client vs the built-in's"
if [[ ${PROFILE_PERF:-1} != 0 ]] && command -v perf >/dev/null && [[ -s $CBV_RIG_DIR/exim.pid ]]; then
	MX=$(cat "$CBV_RIG_DIR/exim.pid")
	# mx_cpu LABEL CONNECTIONS CMD...: CMD's connections to the MX, its CPU per connection
	mx_cpu() {
		local label=$1 n=$2 sp
		shift 2
		perf stat -e task-clock -x, -o "$W/mx.cpu" -p "$MX" 2>/dev/null &
		sp=$!
		sleep 0.3
		"$@" >/dev/null 2>&1
		sleep 0.5 # the last connection processes exit
		kill -INT "$sp" 2>/dev/null
		wait "$sp" 2>/dev/null
		awk -F, -v n="$n" -v l="$label" '/task-clock/ { printf "  %-40s %8.0f us\n", l, $1 * 1000 / n }' "$W/mx.cpu"
	}
	printf '%s\n' 'HELO bench.test' 'MAIL FROM:<>' 'RCPT TO:<alice@exim.test>' 'RCPT TO:<alice@exim.test>' \
		'RCPT TO:<alice@exim.test>' 'RCPT TO:<alice@exim.test>' 'RCPT TO:<alice@exim.test>' 'QUIT' |
		sed 's/$/\r/' >"$W/bhc.in"
	bhc() { # 10 sessions of 5 verified RCPTs: 50 callouts
		local i
		for ((i = 0; i < 10; i++)); do front "$@" -bhc 127.0.0.1 <"$W/bhc.in"; done
	}
	for r in 1 2 3; do
		mx_cpu "cbv client, plain (run $r)" 50 "$P" -l 50 exim
		mx_cpu "built-in client, plain (run $r)" 50 bhc -DFRONT_BUILTIN=1 -DFRONT_NOLOAD=1 -DFRONT_PLAIN=1
		mx_cpu "cbv client, STARTTLS (run $r)" 50 "$P" -l 50 exim-tls
		mx_cpu "built-in client, STARTTLS (run $r)" 50 bhc -DFRONT_BUILTIN=1 -DFRONT_NOLOAD=1
	done
else
	echo "(perf not installed, PROFILE_PERF=0 or no rig Exim pid: skipped)"
fi
