#!/bin/sh
# Installs the Debian 12 packages exim-cbv needs to build, test and demo.
# As root: installs what is missing with apt-get.  Otherwise: prints the
# exact apt-get line and fails if anything is missing.
set -eu

PKGS="build-essential pkg-config libpcre2-dev libc-ares-dev libssl-dev
check libsubunit-dev exim4-dev exim4-daemon-heavy dnsmasq-base swaks
openssl ca-certificates clang valgrind python3 mailfromd util-linux
iproute2 bind9-dnsutils"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# The Redis cache backend: hiredis to build it, redis-server for its tests.
for p in libhiredis-dev redis-server; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "exim-cbv needs these Debian packages:$missing" >&2
	echo "run as root:  apt-get install -y --no-install-recommends$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
