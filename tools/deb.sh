#!/bin/sh
# make deb: builds the Debian package from a copy of this tree (stray
# build outputs included: debian/rules clean removes them), so
# dpkg-buildpackage writes nothing outside it.  The .deb lands in
# build-deb/.  Needs dpkg-dev and debhelper besides tools/deps.sh's build
# part; checks that VERSION and debian/changelog agree.
set -eu
cd "$(dirname "$0")/.."
v=$(cat VERSION)
dv=$(dpkg-parsechangelog -S Version)
if [ "$v" != "$dv" ]; then
	echo "deb.sh: VERSION says $v, debian/changelog $dv" >&2
	exit 1
fi
w=$(mktemp -d /tmp/cbv-deb.XXXXXX)
trap 'rm -rf "$w"' EXIT
mkdir "$w/exim4-cbv-$v"
tar -c --exclude=./.git --exclude=./build-deb . | tar -x -C "$w/exim4-cbv-$v"
(cd "$w/exim4-cbv-$v" && dpkg-buildpackage -us -uc -b)
rm -rf build-deb && mkdir -p build-deb
cp "$w"/*.deb "$w"/*.buildinfo "$w"/*.changes build-deb/
ls -l build-deb/*.deb
