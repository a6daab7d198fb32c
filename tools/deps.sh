#!/bin/sh
# Installs the Debian 12 packages exim-cbv needs to build, test and demo.
# As root: installs what is missing with apt-get.  Otherwise: prints the
# exact apt-get line and fails if anything is missing.
#
#   tools/deps.sh            build and test groups (make demo, make test)
#   tools/deps.sh deb        build group and the packaging tools (make deb)
#   tools/deps.sh --list build|test|deb   print one group, one package a line
#
# apt-get runs with --no-install-recommends, so every package a command
# of ours needs is named here, Recommends included (swaks's Perl modules).
# The build group is debian/control's Build-Depends (make fresh-check
# compares the two); `make` itself must be there before any of this.
set -eu

# Compiler and libraries: cbv, cbv.so, cbvd (make, dpkg-buildpackage).
BUILD="build-essential pkg-config libpcre2-dev libc-ares-dev libssl-dev
exim4-dev liblmdb-dev libidn2-dev libhiredis-dev"

# make check / demo / bench / valgrind / fuzz, and the commands their
# scripts call: Check; the rig's Exim, dnsmasq, dig, ss, openssl; swaks
# with STARTTLS (libnet-ssleay-perl) and IPv6 (libio-socket-inet6-perl);
# mdb_dump and mdb_load (lmdb-utils) to damage stored values in tests;
# ps/pgrep/pkill (procps); calloutd (mailfromd); setsid, unshare, runuser
# (util-linux); python3 for the protocol clients; redis-server for the
# Redis cache backend's tests (each starts its own on loopback);
# python3-prometheus-client's parser checks cbvd's metrics format.
TEST="check libsubunit-dev exim4-daemon-heavy dnsmasq-base swaks
libnet-ssleay-perl libio-socket-inet6-perl openssl ca-certificates clang lmdb-utils
valgrind python3 mailfromd util-linux iproute2 bind9-dnsutils procps
redis-server
python3-prometheus-client"

# dpkg-buildpackage and debhelper, for make deb only.
DEB="dpkg-dev debhelper"

if [ "${1:-}" = --list ]; then
	case ${2:-} in
	build) printf '%s\n' $BUILD ;;
	test) printf '%s\n' $TEST ;;
	deb) printf '%s\n' $DEB ;;
	*) echo "usage: $0 [deb | --list build|test|deb]" >&2; exit 64 ;;
	esac
	exit 0
fi
case ${1:-} in
"") PKGS="$BUILD $TEST" ;;
deb) PKGS="$BUILD $DEB" ;;
*) echo "usage: $0 [deb | --list build|test|deb]" >&2; exit 64 ;;
esac

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
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
