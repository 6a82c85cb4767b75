#!/usr/bin/env bash
# tests/install.sh — checks `make install` and `make uninstall`.
#
# Installs from the binaries already built under $BUILD (build/ by default)
# into a temporary DESTDIR with PREFIX=/usr, then checks: exactly the
# expected files, each with its mode; the installed binaries run; the units
# name the installed binaries and carry their hardening lines;
# `systemd-analyze verify` accepts both units without a warning and rates
# the tracker's sandbox (when systemd-analyze exists); `man -l` renders both
# pages (when man exists); BINDIR and the unit folders can be moved; a
# relative BINDIR is refused; and `make uninstall` leaves no file behind.
# Everything it makes is under one mktemp folder, removed on any exit.
#
#   BUILD=build/asan SANITIZE=1 bash tests/install.sh
#
# Prints one line per check and closes with "install: N passed, N failed,
# N skipped"; exits 1 when any check failed.

set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
sanitize=${SANITIZE:-}
make_cmd=${MAKE:-make}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
# man may read the pages as its own user when run as root.
chmod 755 "$tmp"
dest=$tmp/dest

pass=0
fail=0
skip=0

ok() {
  pass=$((pass + 1))
  echo "ok: $*"
}
bad() {
  fail=$((fail + 1))
  echo "FAILED: $*"
}
skipped() {
  skip=$((skip + 1))
  echo "skipped: $*"
}
# check DESCRIPTION COMMAND...: one check, passed when COMMAND succeeds.
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

finish() {
  echo "install: $pass passed, $fail failed, $skip skipped"
  [ "$fail" -eq 0 ]
  exit $?
}

# make_in LOG ARGS...: runs this tree's Makefile on its own (not as part of
# the make that runs this test: no jobserver, no inherited flags), with the
# build configuration under test; its output goes to LOG.
make_in() {
  local log=$1
  shift
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    "$make_cmd" --no-print-directory -C "$root" BUILD="$build" \
    SANITIZE="$sanitize" "$@" >"$log" 2>&1
}

# files_under DIR: every file and link under DIR (folders left out),
# relative to it, sorted.
files_under() {
  (cd "$1" && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort)
}

# indent: the lines of stdin, each indented under the check they explain.
indent() { sed 's/^/  /'; }
has_line() { grep -qxF -- "$2" "$1"; }
lacks_key() { ! grep -q "^$2=" "$1"; }
# make install fills the unit templates' @BINDIR@-style markers in; none
# may be left in an installed unit.
# shellcheck disable=SC2317 # called through check
all_substituted() { ! grep -n '@[A-Z_]*@' "$@"; }

for b in shoal-tracker shoal-peer; do
  if [ ! -x "$root/$build/bin/$b" ]; then
    bad "$build/bin/$b is built (run 'make build BUILD=$build' first)"
    finish
  fi
done

# --- install ---------------------------------------------------------------
if make_in "$tmp/install.log" install DESTDIR="$dest" PREFIX=/usr; then
  ok "make install DESTDIR=... PREFIX=/usr"
else
  bad "make install DESTDIR=... PREFIX=/usr; its output:"
  indent <"$tmp/install.log"
  finish
fi

sys_unit=usr/lib/systemd/system/shoal-tracker.service
user_unit=usr/lib/systemd/user/shoal-peer.service
expected="usr/bin/shoal-peer 755
usr/bin/shoal-tracker 755
usr/lib/systemd/system/shoal-tracker.service 644
usr/lib/systemd/user/shoal-peer.service 644
usr/share/man/man1/shoal-peer.1 644
usr/share/man/man1/shoal-tracker.1 644"

got=$(cd "$dest" && files_under . | while read -r f; do
  printf '%s %s\n' "$f" "$(stat -c %a "$f")"
done)
if [ "$got" = "$expected" ]; then
  ok "installed exactly the six files, each with its mode"
else
  bad "installed files and modes differ; expected:"
  printf "%s\n" "$expected" | indent
  echo "  got:"
  printf "%s\n" "$got" | indent
fi

for b in shoal-tracker shoal-peer; do
  check "$b is the binary from $build/bin" \
    cmp -s "$root/$build/bin/$b" "$dest/usr/bin/$b"
  out=$("$dest/usr/bin/$b" --version 2>&1)
  rc=$?
  case "$rc:$out" in
  "0:$b "[0-9]*) ok "installed $b --version: $out" ;;
  *) bad "installed $b --version: exit $rc, '$out'" ;;
  esac
done
for p in shoal-tracker shoal-peer; do
  check "man page $p.1 is docs/$p.1" \
    cmp -s "$root/docs/$p.1" "$dest/usr/share/man/man1/$p.1"
done

# --- the units ---------------------------------------------------------------
su=$dest/$sys_unit
uu=$dest/$user_unit
check "every @NAME@ marker of the templates substituted in the units" \
  all_substituted "$su" "$uu"
# shellcheck disable=SC2016 # systemd expands $SHOAL_TRACKER_OPTS, not the shell
check "tracker unit starts /usr/bin/shoal-tracker with its key in the state dir" \
  has_line "$su" \
  'ExecStart=/usr/bin/shoal-tracker --key %S/shoal-tracker/tracker.key $SHOAL_TRACKER_OPTS'
check "peer unit starts /usr/bin/shoal-peer daemon" \
  has_line "$uu" 'ExecStart=/usr/bin/shoal-peer daemon'

missing=""
for line in Type=simple DynamicUser=yes StateDirectory=shoal-tracker \
  StateDirectoryMode=0700 ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
  PrivateDevices=yes NoNewPrivileges=yes ProtectKernelTunables=yes \
  ProtectKernelModules=yes ProtectControlGroups=yes \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' RestrictNamespaces=yes \
  LockPersonality=yes MemoryDenyWriteExecute=yes \
  SystemCallArchitectures=native CapabilityBoundingSet= Restart=on-failure \
  EnvironmentFile=-/etc/default/shoal-tracker WantedBy=multi-user.target; do
  has_line "$su" "$line" || missing="$missing '$line'"
done
if [ -z "$missing" ]; then
  ok "tracker unit has every hardening line"
else
  bad "tracker unit lacks:$missing"
fi

missing=""
for line in Type=simple NoNewPrivileges=yes Restart=on-failure \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' RestrictNamespaces=yes \
  LockPersonality=yes MemoryDenyWriteExecute=yes \
  SystemCallArchitectures=native WantedBy=default.target; do
  has_line "$uu" "$line" || missing="$missing '$line'"
done
if [ -z "$missing" ]; then
  ok "peer unit has every hardening line"
else
  bad "peer unit lacks:$missing"
fi

# A user manager cannot make mount namespaces (without PrivateUsers=), nor
# switch users: the peer's unit must not ask for either.
bad_keys=""
for key in DynamicUser User ProtectSystem ProtectHome PrivateTmp \
  PrivateDevices ProtectKernelTunables ProtectKernelModules \
  ProtectControlGroups CapabilityBoundingSet StateDirectory; do
  lacks_key "$uu" "$key" || bad_keys="$bad_keys $key="
done
if [ -z "$bad_keys" ]; then
  ok "peer unit uses no setting a user manager cannot apply"
else
  bad "peer unit has settings a user manager cannot apply:$bad_keys"
fi

# systemd-analyze verify checks that ExecStart= is an executable file at
# its real path, so it reads copies whose ExecStart= points into $dest.
# It reports unknown keys and bad values as warnings with exit status 0:
# any output at all is a failure here. With man present, MANPATH lets it
# check Documentation=man:... against the installed pages too.
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$tmp/verify/system" "$tmp/verify/user" "$tmp/run"
  chmod 700 "$tmp/run"
  sed "s|=/usr/bin/|=$dest/usr/bin/|" "$su" >"$tmp/verify/system/shoal-tracker.service"
  sed "s|=/usr/bin/|=$dest/usr/bin/|" "$uu" >"$tmp/verify/user/shoal-peer.service"
  manopt=--man=yes
  command -v man >/dev/null 2>&1 || manopt=--man=no
  # The user manager's paths need a runtime folder of their own.
  export XDG_RUNTIME_DIR="$tmp/run"
  export MANPATH="$dest/usr/share/man"
  if out=$(systemd-analyze verify $manopt \
    "$tmp/verify/system/shoal-tracker.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify shoal-tracker.service ($manopt)"
  else
    bad "systemd-analyze verify shoal-tracker.service:"
    printf "%s\n" "$out" | indent
  fi
  if out=$(systemd-analyze --user verify $manopt \
    "$tmp/verify/user/shoal-peer.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze --user verify shoal-peer.service ($manopt)"
  else
    bad "systemd-analyze --user verify shoal-peer.service:"
    printf "%s\n" "$out" | indent
  fi
  # systemd 250 and later rate a unit file's sandbox offline, from 0 (tight)
  # to 10; the tracker's must stay under 2.5 (systemd says "OK" under 4.5).
  version=$(systemd-analyze --version | awk 'NR == 1 { print $2 }')
  if [ "${version:-0}" -ge 250 ] 2>/dev/null; then
    if out=$(systemd-analyze security --offline=yes --threshold=25 \
      "$tmp/verify/system/shoal-tracker.service" 2>&1); then
      ok "tracker unit's $(echo "$out" | grep -o 'exposure level.*' | head -n 1)"
    else
      bad "systemd-analyze security: the tracker's exposure is over 2.5:"
      printf '%s\n' "$out" | grep -E '✗|exposure level' | indent
    fi
  else
    skipped "systemd-analyze security --offline (needs systemd 250, this is ${version:-unknown})"
  fi
  unset MANPATH
else
  skipped "systemd-analyze verify and security: systemd-analyze is not installed"
fi

# --- the man pages -----------------------------------------------------------
if command -v man >/dev/null 2>&1; then
  for p in shoal-tracker shoal-peer; do
    page=$dest/usr/share/man/man1/$p.1
    if out=$(MANPAGER=cat MANWIDTH=80 man -l "$page" 2>"$tmp/man.err") &&
      printf '%s\n' "$out" | grep -q '^NAME' &&
      printf '%s\n' "$out" | grep -q "^ *$p "; then
      ok "man -l renders the installed $p.1"
    else
      bad "man -l $p.1 did not render:"
      indent <"$tmp/man.err"
    fi
  done
else
  skipped "man -l: man is not installed"
fi

# --- uninstall ---------------------------------------------------------------
if make_in "$tmp/uninstall.log" uninstall DESTDIR="$dest" PREFIX=/usr; then
  left=$(files_under "$dest")
  if [ -z "$left" ]; then
    ok "make uninstall leaves no file behind"
  else
    bad "make uninstall left:"
    printf "%s\n" "$left" | indent
  fi
else
  bad "make uninstall failed:"
  indent <"$tmp/uninstall.log"
fi
check "make uninstall again (nothing installed) succeeds" \
  make_in "$tmp/uninstall2.log" uninstall DESTDIR="$dest" PREFIX=/usr

# --- moved folders -----------------------------------------------------------
# BINDIR, MANDIR and the unit folders each override PREFIX's choice, and
# ExecStart= follows BINDIR.
moved="BINDIR=/opt/shoal/sbin MANDIR=/opt/shoal/man
SYSTEMD_SYSTEM_UNITDIR=/etc/systemd/system
SYSTEMD_USER_UNITDIR=/etc/systemd/user"
# shellcheck disable=SC2086 # one word per variable
if make_in "$tmp/install2.log" install DESTDIR="$tmp/dest2" PREFIX=/usr $moved; then
  expected2="etc/systemd/system/shoal-tracker.service
etc/systemd/user/shoal-peer.service
opt/shoal/man/man1/shoal-peer.1
opt/shoal/man/man1/shoal-tracker.1
opt/shoal/sbin/shoal-peer
opt/shoal/sbin/shoal-tracker"
  got2=$(files_under "$tmp/dest2")
  if [ "$got2" = "$expected2" ]; then
    ok "BINDIR, MANDIR and the unit folders can be moved"
  else
    bad "with moved folders, installed:"
    printf "%s\n" "$got2" | indent
  fi
  check "the units' ExecStart= follows BINDIR" \
    grep -q '^ExecStart=/opt/shoal/sbin/shoal-peer daemon$' \
    "$tmp/dest2/etc/systemd/user/shoal-peer.service"
  check "the tracker unit's ExecStart= follows BINDIR" \
    grep -q '^ExecStart=/opt/shoal/sbin/shoal-tracker ' \
    "$tmp/dest2/etc/systemd/system/shoal-tracker.service"
  # shellcheck disable=SC2086
  make_in "$tmp/uninstall3.log" uninstall DESTDIR="$tmp/dest2" PREFIX=/usr $moved
  check "make uninstall with the same folders leaves no file behind" \
    test -z "$(files_under "$tmp/dest2")"
else
  bad "make install with moved folders:"
  indent <"$tmp/install2.log"
fi

# A unit cannot name a relative path: install refuses before copying.
if make_in "$tmp/install3.log" install DESTDIR="$tmp/dest3" BINDIR=bin; then
  bad "make install BINDIR=bin (relative) succeeded"
elif grep -q 'BINDIR must be an absolute path' "$tmp/install3.log" &&
  [ ! -e "$tmp/dest3" ]; then
  ok "make install refuses a relative BINDIR and copies nothing"
else
  bad "make install BINDIR=bin failed, but not as expected:"
  indent <"$tmp/install3.log"
fi

finish
