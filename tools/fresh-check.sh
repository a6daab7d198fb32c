#!/bin/bash
# make fresh-check: the README's promises on a truly fresh Debian 12.
#
#  1. mmdebstrap --variant=minbase bookworm, plus make (the README says to
#     install make first): one root tarball, unpacked twice.
#  2. Source root: a git clone of the COMMITTED tree (HEAD), the README's
#     two commands run there exactly as written ("make demo", "make test",
#     read from the README), then dpkg-buildpackage -us -uc -b in that same
#     tree, stray build outputs and all; lintian (on this host) on the result.
#  3. Package root: the README's "Install from the Debian package" commands
#     as written, then debian/tests/exim-verify (cbv.so -> cbvd -> a loopback
#     Exim), the conffile prompt on an upgrade over a local change, Exim with
#     the snippet hooked in after "apt-get remove" (451, panic log), and
#     after "apt-get purge": no file of ours left, Exim still accepts mail.
#
# apt inside the roots uses this host's network (Debian's mirror); every
# command that starts servers runs in a new network namespace with only
# loopback (unshare -n), so it never meets another rig on this machine.
# Everything runs in a private mount namespace; on every exit path the
# processes inside the roots are killed (by pid), the mounts undone and the
# work directory removed (CBV_FRESH_KEEP=1 keeps it).  Prints timings.
#
# Environment: CBV_FRESH_BASE=FILE.tar reuses a root tarball (development
# only; CI builds it fresh), CBV_FRESH_DIR=DIR (default /var/tmp),
# CBV_FRESH_KEEP=1.
set -euo pipefail
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIRRORS=("deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main")
die() { echo "fresh-check: $*" >&2; exit 1; }

if [[ ${CBV_FRESH_INNER:-} != 1 ]]; then
	((EUID == 0)) || die "run as root (mmdebstrap, chroot, mounts, namespaces)"
	# This script's own host-side needs; everything else is installed
	# inside the roots by the README's commands.
	need=""
	for p in mmdebstrap lintian git iproute2 util-linux; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
	done
	if [[ -n $need ]]; then
		echo "fresh-check: installing on this host:$need"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
	fi
	exec env CBV_FRESH_INNER=1 unshare --mount --propagation private -- "$0" "$@"
fi

# ---- inside our own mount namespace ------------------------------------
W=$(mktemp -d "${CBV_FRESH_DIR:-/var/tmp}/cbv-fresh.XXXXXX")
ROOTS=()
T_START=$SECONDS
TIMES=()
step() { echo; echo "==== fresh-check: $*"; }
CHILD=
timed() { # LABEL CMD...: runs CMD, records its time
	local label=$1 t0=$SECONDS rc=0
	shift
	# In the background, so that a signal reaches our trap at once
	# (bash runs traps only between foreground commands).
	"$@" &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=
	TIMES+=("$(printf '%-44s %4ds' "$label" $((SECONDS - t0)))")
	return "$rc"
}

# Processes whose root directory is inside W, by pid.
procs_in_w() {
	local p r
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		[[ $r == "$W"/* ]] && echo "${p#/proc/}"
	done
	return 0
}

cleanup() {
	local rc=$? pids i r
	set +e
	[[ -n $CHILD ]] && kill -TERM "$CHILD" 2>/dev/null
	pids=$(procs_in_w)
	if [[ -n $pids ]]; then
		echo "fresh-check: stopping leftover processes: $pids" >&2
		kill -TERM $pids 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			pids=$(procs_in_w)
			[[ -z $pids ]] && break
			sleep 0.1
		done
		[[ -n $pids ]] && kill -KILL $pids 2>/dev/null
		sleep 0.2
	fi
	for r in "${ROOTS[@]}"; do
		mountpoint -q "$r" && umount -R "$r"
	done
	if grep -q " $W/" /proc/self/mountinfo; then
		echo "fresh-check: mounts left under $W; not removing it" >&2
		grep " $W/" /proc/self/mountinfo >&2
	elif [[ ${CBV_FRESH_KEEP:-} == 1 ]]; then
		echo "fresh-check: kept $W"
	else
		rm -rf --one-file-system "$W"
	fi
	if ((${#TIMES[@]})); then
		echo
		echo "==== fresh-check timings"
		printf '  %s\n' "${TIMES[@]}"
		printf '  %-44s %4ds\n' total $((SECONDS - T_START))
	fi
	((rc == 0)) && echo "==== fresh-check: PASS" || echo "==== fresh-check: FAIL (exit $rc)"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# An unpacked root with what a booted machine has: it is a mount point of
# its own (unshare --propagation inside needs that), /proc, /sys, /dev,
# /run, the host's resolver for apt, and a policy-rc.d, so that packages
# installed inside never start services in this host's network.
mkroot() { # DIR
	local r=$1
	mkdir -p "$r"
	tar -x -C "$r" -f "$W/base.tar"
	ROOTS+=("$r")
	mount --bind "$r" "$r"
	mount --make-private "$r"
	mount -t proc proc "$r/proc"
	mount -t sysfs -o ro sysfs "$r/sys"
	mount --bind /dev "$r/dev"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
	mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
	mount -t tmpfs -o mode=755 tmpfs "$r/run"
	mkdir -p "$r/run/lock"
	chmod 1777 "$r/run/lock"
	cp -L /etc/resolv.conf "$r/etc/resolv.conf"
	printf '#!/bin/sh\n# fresh-check: no services in the host network\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 755 "$r/usr/sbin/policy-rc.d"
}

# Runs a shell command in root DIR as root, with a clean environment.
# in_root DIR CMD (host network: apt) / in_root_lo DIR CMD (loopback only)
ENVIRON=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive)
in_root() {
	"${ENVIRON[@]}" chroot "$1" /bin/bash -ec "$2"
}
in_root_lo() {
	"${ENVIRON[@]}" unshare --net -- /bin/sh -c 'ip link set lo up && exec chroot "$0" /bin/bash -ec "$1"' "$1" "$2"
}

# The README's commands: the first indented block of lines under a section
# title ("The two commands (source build)", "Install from the Debian
# package"), comments cut.
readme_block() { # SECTION-TITLE -> the section's indented command lines
	awk -v t="$1" '
		$0 == t { on = 1; getline; next }
		on && /^(-+|=+)$/ { exit }
		on && n && /^[^ ]/ { exit }
		on && /^    [a-z]/ { sub(/^    /, ""); sub(/ +#.*/, ""); print; n++ }' "$TOP/README"
}
mapfile -t SRC_CMDS < <(readme_block "The two commands (source build)")
mapfile -t DEB_CMDS < <(readme_block "Install from the Debian package")
[[ ${SRC_CMDS[*]} == "make demo make test" ]] ||
	die "README's two commands are not 'make demo' and 'make test': ${SRC_CMDS[*]}"
((${#DEB_CMDS[@]} > 0)) || die "README has no commands under 'Install from the Debian package'"

# Build-Depends must be tools/deps.sh's build part (build-essential implied).
bd=$(awk '/^Build-Depends:/ { on = 1; sub(/^Build-Depends:/, ""); print; next }
	on && /^[ \t]/ { print; next } { on = 0 }' "$TOP/debian/control" |
	tr ',' '\n' | sed 's/[[:space:]]//g; s/(.*//' | grep -v '^$' |
	grep -v '^debhelper-compat' | sort | tr '\n' ' ')
dl=$("$TOP/tools/deps.sh" --list build | grep -v '^build-essential$' | sort | tr '\n' ' ')
[[ $bd == "$dl" ]] || die "debian/control Build-Depends ($bd) != tools/deps.sh build ($dl)"
v=$(cat "$TOP/VERSION")
dv=$(cd "$TOP" && dpkg-parsechangelog -S Version)
[[ $v == "$dv" ]] || die "VERSION ($v) != debian/changelog ($dv)"

HEAD=$(git -C "$TOP" rev-parse HEAD)
if [[ -n $(git -C "$TOP" status --porcelain --untracked-files=no) ]]; then
	echo "fresh-check: note: uncommitted changes are NOT tested; HEAD is $HEAD"
fi

# ---- 1. the minimal root ------------------------------------------------
step "minimal Debian 12 root (mmdebstrap --variant=minbase bookworm, + make)"
if [[ -n ${CBV_FRESH_BASE:-} && -s ${CBV_FRESH_BASE:-} ]]; then
	cp "$CBV_FRESH_BASE" "$W/base.tar"
	TIMES+=("$(printf '%-44s %4s' "root: reused $CBV_FRESH_BASE" -)")
else
	timed "root: mmdebstrap minbase bookworm + make" \
		mmdebstrap --quiet --variant=minbase --include=make bookworm "$W/base.tar" "${MIRRORS[@]}"
fi

# ---- 2. source build: the README's two commands -------------------------
step "source root: git clone of HEAD $HEAD"
S=$W/src
mkroot "$S"
git clone -q --no-hardlinks "$TOP" "$S/root/exim-cbv"
git -C "$S/root/exim-cbv" checkout -q "$HEAD"

# Both commands begin with tools/deps.sh, which needs Debian's mirror; run
# it first with the network, then the commands themselves (which find
# nothing missing) on loopback only.
step "source root: tools/deps.sh (what make demo / make test run first)"
timed "source: tools/deps.sh (apt-get, host network)" in_root "$S" 'cd /root/exim-cbv && tools/deps.sh'
for c in "${SRC_CMDS[@]}"; do
	step "source root: $c  (loopback-only network namespace)"
	timed "source: $c" in_root_lo "$S" "cd /root/exim-cbv && $c" || die "'$c' failed on a fresh root"
done

step "source root: dpkg-buildpackage -us -uc -b in the tree make test used"
timed "deb: apt-get install dpkg-dev debhelper" in_root "$S" \
	'apt-get install -y -q --no-install-recommends $(/root/exim-cbv/tools/deps.sh --list deb)'
timed "deb: dpkg-buildpackage -us -uc -b (stray outputs)" in_root "$S" \
	'cd /root/exim-cbv && ls -d build >/dev/null && dpkg-buildpackage -us -uc -b' ||
	die "dpkg-buildpackage failed in a used tree"
deb=$S/root/exim4-cbv_${v}_amd64.deb
[[ -s $deb ]] || die "no $deb"
step "lintian (host) on the package"
lint=$(lintian --pedantic "$S/root/exim4-cbv_${v}_amd64.changes" 2>&1 | grep -v '^running with root' || true)
if [[ -n $lint ]]; then
	echo "$lint"
	die "lintian is not clean"
fi
echo "lintian --pedantic: clean"

# ---- 3. the package -----------------------------------------------------
step "package root: the README's 'Install from the Debian package'"
P=$W/pkg
mkroot "$P"
git clone -q --no-hardlinks "$TOP" "$P/root/exim-cbv"
git -C "$P/root/exim-cbv" checkout -q "$HEAD"
for c in "${DEB_CMDS[@]}"; do
	step "package root: $c"
	timed "package: $c" in_root "$P" "cd /root/exim-cbv && $c" || die "'$c' failed on a fresh root"
done
in_root "$P" 'dpkg-query -W -f="\${Status} \${Version}\n" exim4-cbv' | grep -q "install ok installed $v" ||
	die "exim4-cbv $v is not installed after the README's commands"

PT=/root/exim-cbv/tools/fresh-pkg-checks.sh
step "package root: debian/tests/exim-verify (loopback only)"
timed "package: debian/tests/exim-verify" in_root_lo "$P" '/root/exim-cbv/debian/tests/exim-verify' ||
	die "debian/tests/exim-verify failed"
step "package root: conffiles, removal with Exim still calling cbv.so, purge"
timed "package: conffiles, remove, purge" in_root_lo "$P" "$PT" || die "package checks failed"
exit 0
