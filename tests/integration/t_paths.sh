#!/bin/bash
# The two paths must agree (issues 11.5, 11.6, 11.8, 11.9): every rig
# scenario (the Exim MX and the fakesmtp hosts) is verified in process
# (`cbv verify --json`) and through cbvd (`cbv verify --server --json`),
# and status, reason, message, code/ecode, sent and recv must be equal;
# elapsed must be set on both.  Also: sent/recv are a true pair (the
# command whose reply was read, and that reply), and starttls = require
# reaches cbvd exactly.  Leaves nothing running.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$TOP/tests/integration/lib.sh"
B=${B:-build}
CBV="$B/cbv"
CBVD="$B/cbvd"

need_rig
need_built "$CBV" "$CBVD"
TMP=$(mktemp -d)
chmod 755 "$TMP"
mkdir "$TMP/run"
cbvd_dirs "$TMP/run"
cleanup() {
	cbvd_stop
	rm -rf "$TMP"
}
trap cleanup EXIT

SOCK="$TMP/run/cbvd.sock"
profile() { # NAME EXTRA...: the profile both paths use
	rig_profile "$1" 'helo = "verifier.test"' 'timeout = 6s' 'command_timeout = 2s' "${@:2}"
}
{
	profile default
	profile strict "starttls = require"
	echo "server { listen = [ \"unix://$SOCK\" ] }"
} > "$TMP/cbvd.conf"
{
	profile default
	profile strict "starttls = require"
} > "$TMP/cbv.conf"

cbvd_start "$CBVD" "$TMP/cbvd.log" -c "$TMP/cbvd.conf"
[ -S "$SOCK" ] && ok "cbvd up" || { bad "cbvd up" "$(cat "$TMP/cbvd.log")"; summary; exit 1; }

# compare ADDRESS [PROFILE]: in process vs through cbvd
compare() {
	local addr=$1 prof=${2:-default}
	"$CBV" verify -c "$TMP/cbv.conf" -p "$prof" --json "$addr" >"$TMP/a.json" 2>"$TMP/a.err"
	"$CBV" verify -c "$TMP/cbv.conf" -p "$prof" --server "unix://$SOCK" --json "$addr" \
		>"$TMP/b.json" 2>"$TMP/b.err"
	if out=$(python3 - "$TMP/a.json" "$TMP/b.json" <<'PY'
import json, re, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
norm = lambda s: re.sub(r"\d\d:\d\d:\d\d|[+-]\d{4}|Sun|Mon|Tue|Wed|Thu|Fri|Sat|\d+ \w{3} \d{4}", "T", s)
diff = [k for k in ("status", "reason", "message", "ecode", "sent", "recv", "host", "ip")
        if norm(a[k]) != norm(b[k])]
if diff:
    print("; ".join("%s: %r vs %r" % (k, a.get(k.split()[0]), b.get(k.split()[0])) for k in diff))
    sys.exit(1)
print(a["status"], a["reason"])
PY
	); then
		ok "same both paths: $addr ($out)"
	else
		bad "same both paths: $addr" "$out; stderr: $(head -c 300 "$TMP/b.err")"
	fi
}

for a in alice@exim.test nobody@exim.test grey@exim.test alice@tls.test \
	x@tarpit.test x@drip.test x@multiline.test x@longline.test x@garbage.test \
	x@earlyclose.test x@mid421.test x@greet554.test x@nullsender.test x@policy.test \
	x@fast.test unknown@fast.test x@refused.test x@nullmx.test x@nowhere.test \
	'x@[127.0.0.40]' 'x@[127.0.0.41]' 'x@[127.0.0.42]' 'x@[127.0.0.43]' \
	'x@[127.0.0.44]' 'x@[127.0.0.45]' 'x@[127.0.0.46]'; do
	compare "$a"
done
compare x@fast.test strict
compare alice@exim.test strict

# One RUN of several VRFYs per domain (issue 9.3): cbvd verifies each
# domain's addresses in one session, and each one's XCBV result must be
# what the in-process verification of that address alone gives.
GROUPED=(alice@exim.test nobody@exim.test grey@exim.test bob@exim.test x@fast.test
	unknown@fast.test y@fast.test a@nullsender.test b@nullsender.test a@policy.test
	b@policy.test a@mid421.test b@mid421.test 'x@[127.0.0.46]' 'y@[127.0.0.46]'
	a@greet554.test b@greet554.test a@nullmx.test 'not an address')
for a in "${GROUPED[@]}"; do
	"$CBV" verify -c "$TMP/cbv.conf" --json "$a" 2>/dev/null
	echo
done >"$TMP/alone.jsonl"
if out=$(python3 - "$SOCK" "$TMP/alone.jsonl" "${GROUPED[@]}" <<'PY'
import json, re, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(30)
f = s.makefile("rb")
rd = lambda: f.readline().decode("latin1").rstrip("\r\n")
assert rd().startswith("OK")
addrs = sys.argv[3:]
for a in addrs:
    s.sendall(b'VRFY "%s"\r\n' % a.encode()); assert rd().startswith("OK ")
s.sendall(b"RUN\r\n")
x = {}
while True:
    l = rd()
    m = re.match(r"\* (\d+) XCBV (\w+) (.*)$", l)
    if m:
        d = x.setdefault(int(m.group(1)), {})
        d[m.group(2)] = d[m.group(2)] + "\n" + m.group(3) if m.group(2) in d else m.group(3)
    elif not l.startswith("*"):
        final = l; break
s.sendall(b"QUIT\r\n")
alone = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
norm = lambda v: re.sub(r"\d\d:\d\d:\d\d|[+-]\d{4}|Sun|Mon|Tue|Wed|Thu|Fri|Sat|\d+ \w{3} \d{4}", "T", str(v))
bad = []
for i, a in enumerate(alone):
    got = x.get(i, {})
    for k in ("status", "reason", "message", "ecode", "sent", "recv", "host", "ip"):
        if norm(a.get(k, "")) != norm(got.get(k, "")):
            bad.append("%s %s: %r alone vs %r in one RUN" % (addrs[i], k, a.get(k), got.get(k)))
print("; ".join(bad) if bad else "%d addresses; %s" % (len(alone), final))
sys.exit(1 if bad or len(alone) != len(addrs) else 0)
PY
); then
	ok "one RUN, several per domain: each address as alone in process ($out)"
else
	bad "one RUN, several per domain: each address as alone in process" "$out"
fi

# expect_json NAME ADDRESS PYTHON-CONDITION [cbv args...]: in process and via cbvd
expect_json() {
	local name=$1 addr=$2 cond=$3
	shift 3
	for path in in-process server; do
		local extra=()
		[ "$path" = server ] && extra=(--server "unix://$SOCK")
		"$CBV" verify -c "$TMP/cbv.conf" "${extra[@]}" "$@" --json "$addr" >"$TMP/x.json" 2>"$TMP/x.err"
		if python3 -c "import json,sys; x=json.load(open(sys.argv[1])); sys.exit(0 if ($cond) else 1)" "$TMP/x.json"; then
			ok "$name ($path)"
		else
			bad "$name ($path)" "$(cat "$TMP/x.json") $(head -c 300 "$TMP/x.err")"
		fi
	done
}

# 11.4: the sender refused at RCPT time is not a bad recipient
expect_json "RCPT 550 5.1.8 is error sender_refused" 'x@[127.0.0.40]' \
	'x["status"] == "error" and x["reason"] == "sender_refused" and x["ecode"] == "5.1.8"'
# 11.11: a reply over 16 KiB is a protocol error
expect_json "RCPT reply over 16 KiB is protocol_error" 'x@[127.0.0.42]' \
	'x["status"] == "error" and x["reason"] == "protocol_error" and "longer than 16383" in x["message"]'
# 11.8: true pairs
expect_json "pipelined MAIL 550: sent is the MAIL" x@nullsender.test \
	'x["sent"] == "MAIL FROM:<>" and x["recv"].startswith("550 5.7.1")'
expect_json "MAIL 530: sent is the MAIL, tls_required" 'x@[127.0.0.41]' \
	'x["reason"] == "tls_required" and x["sent"] == "MAIL FROM:<>" and x["recv"].startswith("530")'
expect_json "RCPT 250-/550 mix: MAIL pair, protocol_error" 'x@[127.0.0.46]' \
	'x["reason"] == "protocol_error" and x["sent"] == "MAIL FROM:<>" and x["recv"] == "250 2.1.0 Sender OK" and x["message"].startswith("451 4.5.0")'
expect_json "greeting 554 via both: greeting_refused" x@greet554.test \
	'x["reason"] == "greeting_refused" and x["message"] == "554 5.3.2 No service here" and x["sent"] == ""'
expect_json "421 greeting: temp_failure" 'x@[127.0.0.43]' \
	'x["status"] == "transient" and x["reason"] == "temp_failure" and x["message"].startswith("421 4.3.2")'
expect_json "tarpit: timeout, elapsed set" x@tarpit.test \
	'x["reason"] == "timeout" and x["elapsed_ms"] >= 1500'
expect_json "unreachable: connect_failed, elapsed set" x@refused.test \
	'x["reason"] == "connect_failed" and x["elapsed_ms"] >= 0'
# 11.7: require through cbvd stays require (fast.test offers no STARTTLS)
expect_json "starttls=require reaches cbvd: no plain-text pass" x@fast.test \
	'x["status"] == "error" and x["reason"] == "tls_required"' -p strict

summary
