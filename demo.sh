#!/bin/bash
# demo.sh - exim-cbv through a real Exim, on loopback only (`make demo`).
#
# Installs what is missing (tools/deps.sh, as root), builds, starts the
# test rig (dnsmasq, a real Exim MX, hostile fakes: tests/rig/PLAN.md),
# then a second Exim daemon on 127.0.0.61 configured with exim-conf's
# macros, ACLs and snippets (tests/integration/exim/exim.conf), and sends
# it mail with swaks from senders that pass, fail, are transient and give
# an error.  Shows the SMTP decisions, the mainlog lines and the ACL
# variables.  Everything it starts is stopped on exit, however it exits.
#
# Environment: B (build dir, default build), CBV_RIG_PORT/CBV_RIG_DNS_PORT
# (if the default ports 2525/53535 are taken).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
B=${B:-build}

if [[ ${1:-} != --inside ]]; then
	if ((EUID != 0)); then
		echo "demo.sh: run as root (Exim's daemon starts as root)" >&2
		exit 1
	fi
	tools/deps.sh
	# Only what the demo needs (make demo has built everything already).
	make -s "$B/cbv.so" "$B/fakesmtp"
	exec env B="$B" tests/rig/rig.sh run -- "$0" --inside
fi

. tests/integration/exim/lib.sh
front_setup
trap front_cleanup EXIT
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bold "front Exim on $FRONT_IP:$CBV_RIG_PORT with exim-conf (cbv_mail.acl + cbv_rcpt.acl)"
front_daemon_start -DFRONT_MAIL=1 -DFRONT_RCPT=1
echo "cbv.conf used (the rig's DNS and port, loopback allowed):"
sed -n '/"default"/,/^}/p' "$T/cbv.conf"

send() { # LABEL FROM TO
	bold "$1: MAIL FROM:<$2> RCPT TO:<$3>"
	swaks --server "$FRONT_IP" --port "$CBV_RIG_PORT" --helo client.demo.test \
		--timeout 30 --from "$2" --to "$3" --header "Subject: exim-cbv demo" 2>&1 |
		grep -E '^ *(->|<-|<\*\*|\*\*\*) *(MAIL|RCPT|[245][0-9][0-9])' || true
}
send "pass (known user at the Exim MX) -> accepted" alice@exim.test bob@exim.test
send "fail (unknown user) -> rejected 550 with the remote's reply" nobody@exim.test bob@exim.test
send "transient (greylisted at both MXes) -> deferred 451" grey@grey.test bob@exim.test
send "error (remote refuses us by policy) -> accepted, logged" x@policy.test bob@exim.test
send "recipient fail at RCPT (sender passes) -> 550" alice@exim.test nobody@exim.test
sleep 0.5

bold "mainlog: one line per verification"
grep ' cbv: <' "$T/log/mainlog" | cut -c21-
bold "mainlog: ACL decisions"
grep -E 'rejected|Warning: cbv' "$T/log/mainlog" | cut -c21- || true
bold "ACL variables (\$acl_m_*), logged by the DATA ACL of accepted messages"
grep 'X-CBV result' "$T/log/mainlog" | cut -c21- | sed 's/ \([a-z]*=<\)/\n    \1/g'
bold "a last_poll record as \${extract} sees it"
printf '%s\n' "\${dlfunc{$SO}{smtp_callback_verify}{nobody@exim.test}{}{config=$T/cbv.conf}} \${dlfunc{$SO}{last_poll}}" |
	front -be 2>/dev/null | sed 's/^> //; /^$/d' | fold -w 100
front_daemon_stop
bold "done: everything stopped"
