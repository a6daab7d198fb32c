#!/bin/bash
# bench/exim_multi_bench.sh - cbv.so's several-address form (issue 9.3):
# five addresses at one domain verified by one smtp_callback_verify call
# (one SMTP session) against five calls, each sample one `exim -be`
# process (so both sides pay the same process start), samples interleaved.
# Run inside the rig (make bench does).  Environment: BENCH_N (default 20).
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/exim/lib.sh"
N=${BENCH_N:-20}

if nm -D "$B/cbv.so" 2>/dev/null | grep -q '__asan_'; then
	echo "exim_multi_bench: SKIP (sanitizer build)"
	exit 0
fi
front_setup
trap front_cleanup EXIT

now_us() { local t; t=$(date +%s%N); echo $((t / 1000)); }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }

# sample EXPANSION WANT: wall time (µs) of one exim -be; the answer must be WANT
sample() {
	local t0 t1
	t0=$(now_us)
	be "$1"
	t1=$(now_us)
	if [[ $out != "$2" ]]; then
		echo "exim_multi_bench: got '$out', want '$2' ($err)" >&2
		exit 1
	fi
	echo $((t1 - t0))
}

V="\${dlfunc{$SO}{smtp_callback_verify}"
echo "exim_multi_bench: $N samples per case; 5 addresses at one domain, one exim -be each"
printf '%-26s %12s %12s %12s %8s\n' "case (ms)" "no call" "5 calls" "1 call" "ratio"
for c in "exim plain|exim.test|starttls=never|alice bob postmaster nobody x1|pass pass pass fail fail" \
	"exim STARTTLS|exim.test||alice bob postmaster nobody x1|pass pass pass fail fail" \
	"fast MTA|fast.test|starttls=never|alice bob carol unknown1 dave|pass pass pass fail pass"; do
	IFS='|' read -r label dom opts locals want <<<"$c"
	opts="config=$T/cbv.conf timeout=5s $opts"
	one="" five="" sep=""
	for l in $locals; do
		one+="$sep$l@$dom"
		five+="$sep$V{$l@$dom}{}{$opts}}"
		sep=" "
	done
	one="$V{$one}{}{$opts}}"
	rm -f "$T"/m.*
	for ((i = 0; i < N; i++)); do
		sample "x" "x" >>"$T/m.base"
		sample "$five" "$want" >>"$T/m.five"
		sample "$one" "$want" >>"$T/m.one"
	done
	b=$(median <"$T/m.base")
	f=$(median <"$T/m.five")
	o=$(median <"$T/m.one")
	printf '%-26s %12s %12s %12s %7sx\n' "$label" "$(ms "$b")" "$(ms "$f")" "$(ms "$o")" \
		"$(awk -v f="$((f - b))" -v o="$((o - b))" 'BEGIN { if (o <= 0) o = 1; printf "%.2f", f / o }')"
done
echo "(ratio: (5 calls - no call) / (1 call - no call): the verification part alone)"
