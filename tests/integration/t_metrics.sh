#!/bin/bash
# Metrics for operators: cbvd's metrics_listen (Prometheus text format
# 0.0.4 over HTTP) and the counters kept in the cache store for cbv.so
# processes (`cbv cache stats`, `--prometheus`).
#
#   - cbvd with metrics_listen on loopback: counters move exactly as the
#     verifications made through the callout protocol say (N pass, a fail,
#     a cache hit after a repeat, the histogram's count), in_flight is 0
#     at rest, and python3-prometheus-client's parser accepts the text;
#   - bad, huge, slow and surplus HTTP clients get their 4xx or time out,
#     and verifications go on meanwhile; cbvd is alive after them all;
#   - a non-loopback metrics_listen is refused unless metrics_allow_remote;
#   - two separate `cbv verify` processes add up in `cbv cache stats`,
#     its --json and --prometheus forms (the latter parsed too).
# Leaves nothing running.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
B=${B:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
CBVD=$B/cbvd
CBV=$B/cbv
PY=/usr/bin/python3

need_rig
need_built "$CBVD" "$CBV"
if ! $PY -c 'import prometheus_client.parser' 2>/dev/null; then
	skip "python3-prometheus-client is not installed (tools/deps.sh test)"
	summary
	exit 0
fi
TMP=$(mktemp -d /tmp/cbv-metrics.XXXXXX)
chmod 755 "$TMP"
mkdir "$TMP/run" "$TMP/cache" "$TMP/db"
cbvd_dirs "$TMP/run" "$TMP/cache"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(free_port)
MPORT=$(free_port)
while [[ $MPORT == "$PORT" ]]; do MPORT=$(free_port); done
MURL=http://127.0.0.1:$MPORT/metrics
{
	rig_profile default "cache = \"$TMP/cache/cbv\"" 'timeout = 10s'
	rig_profile slow 'timeout = 20s' 'command_timeout = 20s'
	cat <<CONF
server {
  listen = [ "inet://127.0.0.1:$PORT" ]
  metrics_listen = "inet://127.0.0.1:$MPORT"
}
CONF
} >"$TMP/cbv.conf"

# The scraper: GET (or another method/path) with urllib; prints the status,
# the content type, then each sample as NAME{LABELS} VALUE from the
# prometheus_client parser (which raises on a malformed exposition).
cat >"$TMP/scrape.py" <<'PY'
import sys, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families
url, method = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "GET")
req = urllib.request.Request(url, method=method)
try:
    r = urllib.request.urlopen(req, timeout=20)
    code, ctype, body = r.status, r.headers.get("Content-Type"), r.read().decode()
except urllib.error.HTTPError as e:
    code, ctype, body = e.code, e.headers.get("Content-Type"), ""
print("status", code)
print("type", ctype)
print("bytes", len(body))
if code == 200 and body:
    for fam in text_string_to_metric_families(body):
        print("family %s %s" % (fam.name, fam.type))
        for s in fam.samples:
            labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
            print("%s{%s} %s" % (s.name, labels, repr(float(s.value))))
PY
scrape() { timeout 60 $PY "$TMP/scrape.py" "$@" 2>&1; }
# value NAME{LABELS} TEXT: the sample's value, "" if absent
value() { awk -v k="$1" '$1 == k { print $2 }' <<<"$2"; }
expect_value() { # NAME WANT KEY TEXT
	local got
	got=$(value "$3" "$4")
	[[ $got == "$2" ]] && ok "$1" || bad "$1" "$3 = '$got', want $2"
}

# A callout protocol client: VRFYs then RUN; prints the final line.
cat >"$TMP/vrfy.py" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
f.readline()
for a in sys.argv[2:]:
    s.sendall(b'VRFY "%s"\r\n' % a.encode()); f.readline()
s.sendall(b"RUN\r\n")
while True:
    l = f.readline().decode()
    if not l or l.startswith("OK") or l.startswith("NO"):
        print(l.strip()); break
s.sendall(b"QUIT\r\n")
PY
vrfy() { timeout 60 $PY "$TMP/vrfy.py" "$PORT" "$@" 2>&1; }

cbvd_start "$CBVD" "$TMP/cbvd.log" -c "$TMP/cbv.conf"
rc=$?
PIDS+=("$CBVD_PID")
if ((rc == 0)); then ok "cbvd starts with metrics_listen"; else
	bad "cbvd starts with metrics_listen" "$(cat "$TMP/cbvd.log")"; summary; exit 1
fi
expect_text "cbvd logs the metrics listener" "$(cat "$TMP/cbvd.log")" \
	"metrics on inet://127.0.0.1:$MPORT"

# ---- at rest ----
out=$(scrape "$MURL")
expect_text "scrape: 200, text/plain version 0.0.4" "$out" '^status 200$' \
	'^type text/plain; version=0.0.4; charset=utf-8$'
expect_text "scrape: the families parse with their types" "$out" \
	'^family cbv_verifications counter$' '^family cbv_cache_requests counter$' \
	'^family cbv_rate_limited counter$' '^family cbv_redis_outages counter$' \
	'^family cbv_in_flight gauge$' '^family cbv_verification_duration_seconds histogram$' \
	'^family cbvd_build_info gauge$' '^family process_start_time_seconds gauge$'
expect_value "at rest: no verification counted" 0.0 \
	'cbv_verification_duration_seconds_count{}' "$out"
expect_value "at rest: in_flight 0" 0.0 'cbv_in_flight{}' "$out"
expect_value "build_info names the version" 1.0 "cbvd_build_info{version=\"$(cat "$TOP/VERSION")\"}" "$out"

# ---- verifications move the counters ----
line=$(vrfy alice@exim.test bob@exim.test nobody@exim.test)
expect_text "three VRFYs end" "$line" '^OK'
line=$(vrfy alice@exim.test)
expect_text "a repeat ends" "$line" '^OK'
out=$(scrape "$MURL")
expect_value "exactly 3 pass/accepted" 3.0 \
	'cbv_verifications_total{reason="accepted",status="pass"}' "$out"
expect_value "exactly 1 fail/mailbox_unknown" 1.0 \
	'cbv_verifications_total{reason="mailbox_unknown",status="fail"}' "$out"
expect_value "the repeat is an lmdb hit" 1.0 \
	'cbv_cache_requests_total{backend="lmdb",result="hit"}' "$out"
expect_value "the first three were lmdb misses" 3.0 \
	'cbv_cache_requests_total{backend="lmdb",result="miss"}' "$out"
expect_value "no cache errors" 0.0 \
	'cbv_cache_requests_total{backend="lmdb",result="error"}' "$out"
expect_value "histogram count is 4" 4.0 \
	'cbv_verification_duration_seconds_count{}' "$out"
expect_value "histogram +Inf bucket is 4" 4.0 \
	'cbv_verification_duration_seconds_bucket{le="+Inf"}' "$out"
expect_value "in_flight back to 0" 0.0 'cbv_in_flight{}' "$out"
expect_value "nothing rate-limited" 0.0 'cbv_rate_limited_total{cap="domain_max_rate"}' "$out"

# ---- other requests ----
expect_text "HEAD /metrics: 200, no body" "$(scrape "$MURL" HEAD)" '^status 200$' '^bytes 0$'
expect_text "POST: 405" "$(scrape "$MURL" POST)" '^status 405$'
expect_text "another path: 404" "$(scrape "http://127.0.0.1:$MPORT/")" '^status 404$'
# raw requests: garbage, a huge head, a request split over two sends
cat >"$TMP/raw.py" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
parts = sys.argv[2:]
for i, p in enumerate(parts):
    if i: time.sleep(0.3)
    try: s.sendall(p.encode().decode("unicode_escape").encode("latin1"))
    except OSError: break
data = b""
while True:
    try: b = s.recv(65536)
    except OSError: break
    if not b: break
    data += b
print((data.split(b"\r\n")[0] or b"(closed)").decode("latin1"))
PY
raw() { timeout 60 $PY "$TMP/raw.py" "$MPORT" "$@" 2>&1; }
expect_text "garbage: 400" "$(raw 'HELO there\r\n\r\n')" '^HTTP/1.1 400 '
expect_text "a control byte: 400" "$(raw 'GET /metrics HTTP/1.1\r\nX: \x01\r\n\r\n')" '^HTTP/1.1 400 '
expect_text "HTTP/0.9 form: 400" "$(raw 'GET /metrics\r\n\r\n')" '^HTTP/1.1 400 '
big=$(head -c 6000 /dev/zero | tr '\0' a)
expect_text "a 6000-byte head: 431" "$(raw "GET /metrics HTTP/1.1\\r\\nX: $big\\r\\n\\r\\n")" \
	'^HTTP/1.1 431 '
expect_text "a request in two sends: 200" "$(raw 'GET /metr' 'ics HTTP/1.0\r\n\r\n')" \
	'^HTTP/1.1 200 OK$'

# Slow and surplus scrapers: 10 connections that send half a request and
# wait (more than the 8 served at once).  Verifications go on meanwhile,
# and each idle one is closed when its time is up (5 s).
cat >"$TMP/idle.py" <<'PY'
import socket, sys, time
ss = []
for i in range(10):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
    s.sendall(b"GET /metrics HTTP/1.1\r\n")
    ss.append(s)
open(sys.argv[2], "w").write("connected\n")
closed = 0
for s in ss:
    try:
        d = s.recv(100)
        closed += 1  # EOF, or a 431/400: it was let go
    except OSError:
        pass
print("closed", closed)
PY
timeout 90 $PY "$TMP/idle.py" "$MPORT" "$TMP/idle.ready" >"$TMP/idle.out" 2>&1 &
IDLE=$!
PIDS+=("$IDLE")
for ((i = 0; i < 100; i++)); do [[ -e $TMP/idle.ready ]] && break; sleep 0.1; done
line=$(vrfy postmaster@exim.test)
expect_text "a verification while 10 scrapers hang" "$line" '^OK'
wait "$IDLE"
expect_text "every hanging scraper was let go" "$(cat "$TMP/idle.out")" '^closed 10$'
out=$(scrape "$MURL")
expect_value "after them: the scrape answers, 4 pass" 4.0 \
	'cbv_verifications_total{reason="accepted",status="pass"}' "$out"
check "cbvd is still running" kill -0 "$CBVD_PID"

# ---- the in-flight gauge: one verification held by a tarpit, then dropped ----
# (an uncached profile: the client's leaving frees it at once)
cat >"$TMP/hold.py" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
f = s.makefile("rb")
f.readline()
for c in (b'SET PROFILE="slow"', b'VRFY "x@tarpit.test"', b"RUN"):
    s.sendall(c + b"\r\n")
    if c != b"RUN": f.readline()
open(sys.argv[2], "w").write("running\n")
while not __import__("os").path.exists(sys.argv[3]):
    time.sleep(0.05)
s.close()
PY
timeout 60 $PY "$TMP/hold.py" "$PORT" "$TMP/hold.ready" "$TMP/hold.go" >/dev/null 2>&1 &
HOLD=$!
PIDS+=("$HOLD")
for ((i = 0; i < 100; i++)); do [[ -e $TMP/hold.ready ]] && break; sleep 0.1; done
seen=
for ((i = 0; i < 50; i++)); do
	seen=$(value 'cbv_in_flight{}' "$(scrape "$MURL")")
	[[ $seen == 1.0 ]] && break
	sleep 0.1
done
[[ $seen == 1.0 ]] && ok "in_flight 1 while the tarpit holds one" || bad "in_flight 1 while the tarpit holds one" "in_flight $seen"
touch "$TMP/hold.go"
wait "$HOLD"
for ((i = 0; i < 50; i++)); do
	out=$(scrape "$MURL")
	seen=$(value 'cbv_in_flight{}' "$out")
	[[ $seen == 0.0 ]] && break
	sleep 0.1
done
[[ $seen == 0.0 ]] && ok "in_flight 0 once its client left" || bad "in_flight 0 once its client left" "in_flight $seen"
expect_value "an abandoned verification is not counted as ended" 5.0 \
	'cbv_verification_duration_seconds_count{}' "$out"
cbvd_stop

# ---- loopback only unless asked ----
{
	rig_profile default
	printf 'server {\n  listen = [ "inet://127.0.0.1:%s" ]\n  metrics_listen = "inet://192.0.2.1:9464"\n}\n' "$PORT"
} >"$TMP/remote.conf"
if "$CBVD" -f -c "$TMP/remote.conf" 2>"$TMP/remote.log"; then
	bad "non-loopback metrics_listen refused" "cbvd ran"
else
	expect_text "non-loopback metrics_listen refused" "$(cat "$TMP/remote.log")" \
		'metrics_listen inet://192.0.2.1:9464: not a loopback address .*metrics_allow_remote'
fi

# ---- the store's counters: separate processes add up ----
{
	rig_profile default 'timeout = 10s' "cache = \"$TMP/db/cbv\""
} >"$TMP/store.conf"
V=("$CBV" verify -c "$TMP/store.conf")
C=("$CBV" cache -c "$TMP/store.conf")
"${V[@]}" alice@exim.test >/dev/null 2>&1
"${V[@]}" bob@exim.test >/dev/null 2>&1
"${V[@]}" alice@exim.test >/dev/null 2>&1
"${V[@]}" nobody@exim.test >/dev/null 2>&1
"${V[@]}" 'not an address' >/dev/null 2>&1
out=$("${C[@]}" stats 2>&1)
expect_text "cache stats: 5 verified, by verdict and reason" "$out" \
	'^verified   5 ' '^  pass      accepted          3$' \
	'^  fail      mailbox_unknown   1$' '^  fail      bad_syntax        1$' \
	'^lookups    lmdb hit 1, lmdb miss 3'
out=$("${C[@]}" --json stats 2>&1)
got=$($PY -c 'import json,sys; d=json.load(sys.stdin)["counters"]
print(d["verifications"]["pass/accepted"], d["cache_requests"]["lmdb/hit"], d["duration_count"])' <<<"$out" 2>&1)
expect_text "cache stats --json: counters" "$got" '^3 1 5$'
"${C[@]}" stats --prometheus >"$TMP/cbv.prom" 2>&1
out=$($PY - "$TMP/cbv.prom" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        print("%s{%s} %s" % (s.name, labels, repr(float(s.value))))
PY
)
expect_value "--prometheus parses: 3 pass" 3.0 \
	'cbv_verifications_total{reason="accepted",status="pass"}' "$out"
expect_value "--prometheus: 5 in the histogram" 5.0 \
	'cbv_verification_duration_seconds_count{}' "$out"
expect_value "--prometheus: no in_flight gauge (no live process)" "" 'cbv_in_flight{}' "$out"

# ---- the same through Redis: separate processes, one hash ----
if command -v redis-server >/dev/null 2>&1; then
	RPORT=$(free_port)
	redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$TMP" --loglevel warning --logfile '' >/dev/null 2>&1 &
	RPID=$!
	PIDS+=("$RPID")
	for ((i = 0; i < 100; i++)); do
		$PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
			"$RPORT" 2>/dev/null && break
		sleep 0.1
	done
	rig_profile default 'timeout = 10s' "cache = \"redis://127.0.0.1:$RPORT\"" \
		'cache_prefix = "m:"' >"$TMP/redis.conf"
	V=("$CBV" verify -c "$TMP/redis.conf")
	C=("$CBV" cache -c "$TMP/redis.conf")
	"${V[@]}" alice@exim.test >/dev/null 2>&1
	"${V[@]}" alice@exim.test >/dev/null 2>&1
	"${V[@]}" nobody@exim.test >/dev/null 2>&1
	out=$("${C[@]}" stats 2>&1)
	expect_text "redis: three processes add up in cache stats" "$out" \
		'^verified   3 ' '^  pass      accepted          2$' \
		'^  fail      mailbox_unknown   1$' 'redis hit 1, redis miss 2'
	kill "$RPID" 2>/dev/null
	wait "$RPID" 2>/dev/null
else
	skip "redis: no redis-server"
fi

summary
