#!/usr/bin/env bash
# package.test.sh - the Debian package end to end: cpack -G DEB, lintian, dpkg -i
# on this machine, files, owners and modes, man pages, systemd-analyze verify on
# the installed units, the installed mm-gateway run as user mediamail with the
# installed config serving a file over pinned HTTPS, then dpkg --purge.
# Needs root and a machine where the package may be installed and removed (as
# the other integration tests need root); fails at once if mediamail is already
# installed or dpkg is busy. Each step is a function; the sequence is at the end.
set -euo pipefail

: "${MM_BUILD_DIR:?MM_BUILD_DIR must point at the build directory}"
: "${MM_SOURCE_DIR:?MM_SOURCE_DIR must point at the source directory}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

[ "$(id -u)" -eq 0 ] || mm_fail "package.test.sh installs a package: run it as root"

PKG=mediamail
SYSTEM_UNITS=(/usr/lib/systemd/system/mm-gateway.service /usr/lib/systemd/system/mm-milter.service)
USER_UNIT=/usr/lib/systemd/user/mm-fetcher.service
MAN_PAGES=(man8/mm-gateway.8 man8/mm-milter.8 man1/mm-fetcher.1 man1/mmsend.1 man5/mediamail.conf.5)
PKG_INSTALLED_BY_US=0

# Whether dpkg reports PKG as present in any state (installed, config-files, half-installed).
pkg_known() {
  dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null | grep -qv '^not-installed$'
}

# EXIT: purge what this test installed, then the shared cleanup of mailstack.sh.
pkg_on_exit() {
  local rc=$?
  if [ "$PKG_INSTALLED_BY_US" = 1 ] && pkg_known; then
    echo "  .. removing the package left by a failed run: dpkg --purge $PKG" >&2
    dpkg --purge "$PKG" >"$MM_TMP/dpkg-cleanup.out" 2>&1 || cat "$MM_TMP/dpkg-cleanup.out" >&2
  fi
  (exit "$rc")
  mm__on_exit
}

# Refuse to start on a machine where the package (or its files) already is:
# this test must not replace someone's installation, nor purge it afterwards.
pkg_preconditions() {
  if pkg_known; then
    mm_fail "package $PKG is already known to dpkg ($(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$PKG")); remove it first (dpkg --purge $PKG)"
  fi
  local f
  for f in /etc/mediamail/mediamail.conf /usr/sbin/mm-gateway /usr/sbin/mm-milter /usr/bin/mmsend /usr/bin/mm-fetcher; do
    [ ! -e "$f" ] || mm_fail "$f exists without the package (a hand install?); remove it first"
  done
}

# Set PKG_TREE to a build tree configured for the /usr prefix: MM_BUILD_DIR if it is
# one, else a tree of its own under it, configured once and then built incrementally.
pkg_build_tree() {
  local prefix
  prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$MM_BUILD_DIR/CMakeCache.txt")
  if [ "$prefix" = /usr ]; then
    PKG_TREE=$MM_BUILD_DIR
  else
    # A tree for another prefix must be refused by cpack, not packaged wrongly.
    if (cd "$MM_BUILD_DIR" && cpack -G DEB -B "$MM_TMP/wrong-prefix") >"$MM_TMP/cpack-wrong.out" 2>&1; then
      mm_fail "cpack -G DEB packaged a tree configured for prefix $prefix"
    fi
    grep -q "CMAKE_INSTALL_PREFIX=/usr" "$MM_TMP/cpack-wrong.out" ||
      mm_fail "cpack refused the $prefix tree without saying why: $(tail -3 "$MM_TMP/cpack-wrong.out")"
    mm_log "cpack refuses a tree configured for prefix $prefix"
    PKG_TREE=$MM_BUILD_DIR/package-tree
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    cmake -S "$MM_SOURCE_DIR" -B "$PKG_TREE" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMM_TESTS=OFF \
      "${launcher[@]}" >"$MM_TMP/cmake.out" 2>&1 || mm_fail "cmake for the package tree: $(tail -5 "$MM_TMP/cmake.out")"
  fi
  # cpack builds "all" first; a tree of MM_BUILD_DIR's may have tests in it. Another
  # build directory, same sources and flags: let ccache reuse the main tree's objects.
  CCACHE_NOHASHDIR=true cmake --build "$PKG_TREE" -j2 --target mm-gateway mm-milter mm-fetcher mmsend man package-doc \
    >"$MM_TMP/build.out" 2>&1 || mm_fail "building the package tree: $(tail -20 "$MM_TMP/build.out")"
}

# Build the .deb into $MM_TMP/deb; set DEB.
pkg_build_deb() {
  local arch version
  arch=$(dpkg --print-architecture)
  version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$PKG_TREE/CMakeCache.txt")
  (cd "$PKG_TREE" && cpack -G DEB -B "$MM_TMP/deb") >"$MM_TMP/cpack.out" 2>&1 ||
    mm_fail "cpack -G DEB failed: $(tail -20 "$MM_TMP/cpack.out")"
  DEB=$MM_TMP/deb/${PKG}_${version}_${arch}.deb
  [ -f "$DEB" ] || mm_fail "cpack did not make $(basename "$DEB"): $(ls "$MM_TMP/deb")"
  mm_log "built $(basename "$DEB"), $(stat -c %s "$DEB") bytes"
}

# The package's control data and file list, before installing it.
pkg_check_contents() {
  dpkg-deb --field "$DEB" Depends Recommends Section >"$MM_TMP/control.txt"
  grep -q '^Depends:.*libc6' "$MM_TMP/control.txt" || mm_fail "Depends lacks the shared libraries (dpkg-shlibdeps): $(cat "$MM_TMP/control.txt")"
  grep -q '^Depends:.*adduser' "$MM_TMP/control.txt" || mm_fail "Depends lacks adduser"
  grep -q '^Recommends: postfix' "$MM_TMP/control.txt" || mm_fail "Recommends lacks postfix"
  dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles >"$MM_TMP/conffiles" 2>/dev/null || true
  [ "$(cat "$MM_TMP/conffiles")" = /etc/mediamail/mediamail.conf ] ||
    mm_fail "conffiles is '$(cat "$MM_TMP/conffiles")', not /etc/mediamail/mediamail.conf"
  dpkg-deb --contents "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$MM_TMP/files.txt"
  local f
  for f in /usr/sbin/mm-gateway /usr/sbin/mm-milter /usr/bin/mm-fetcher /usr/bin/mmsend \
    "${SYSTEM_UNITS[@]}" "$USER_UNIT" /usr/lib/sysusers.d/mediamail.conf /usr/lib/tmpfiles.d/mediamail.conf \
    /usr/share/doc/mediamail/copyright /usr/share/doc/mediamail/changelog.gz; do
    grep -qx "$f" "$MM_TMP/files.txt" || mm_fail "$f missing from the package"
  done
  for f in "${MAN_PAGES[@]}"; do
    grep -qx "/usr/share/man/$f.gz" "$MM_TMP/files.txt" || mm_fail "man page $f.gz missing from the package"
  done
  if grep -E 'mm-unit|fuzz|/include/|\.a$|/var/|/run/' "$MM_TMP/files.txt"; then
    mm_fail "the package holds test binaries, fuzzers, headers, libraries or /var, /run entries (above)"
  fi
  mm_log "control fields, conffile and file list as expected ($(wc -l <"$MM_TMP/files.txt") entries)"
}

# lintian: no error. Warnings are printed for the reader (docs/deploy.md has none to fix).
pkg_lintian() {
  lintian --no-tag-display-limit "$DEB" >"$MM_TMP/lintian.out" 2>&1 || true
  if grep -q '^E:' "$MM_TMP/lintian.out"; then
    cat "$MM_TMP/lintian.out"
    mm_fail "lintian reports errors"
  fi
  grep -E '^(W|I):' "$MM_TMP/lintian.out" | sed 's/^/  .. lintian /' >&2 || true
  mm_log "lintian: no errors, $(grep -c '^W:' "$MM_TMP/lintian.out" || true) warnings"
}

pkg_install() {
  PKG_INSTALLED_BY_US=1
  if ! dpkg -i "$DEB" >"$MM_TMP/dpkg-i.out" 2>&1; then
    if grep -qi 'lock' "$MM_TMP/dpkg-i.out"; then
      PKG_INSTALLED_BY_US=0
      mm_fail "dpkg is locked by another process (apt running?): $(grep -i lock "$MM_TMP/dpkg-i.out" | head -2)"
    fi
    mm_fail "dpkg -i failed (missing dependency? scripts/install-deps.sh installs them): $(tail -10 "$MM_TMP/dpkg-i.out")"
  fi
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$PKG")" = "ii " ] || mm_fail "dpkg does not list $PKG as installed"
  mm_log "dpkg -i installed $PKG"
}

# expect_stat PATH "OWNER:GROUP MODE" (stat's %U:%G %a).
expect_stat() {
  local got
  got=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || mm_fail "$1 does not exist"
  [ "$got" = "$2" ] || mm_fail "$1 is $got, expected $2"
}

pkg_check_files() {
  id mediamail >/dev/null 2>&1 || mm_fail "no user mediamail after installing"
  getent group mediamail >/dev/null || mm_fail "no group mediamail after installing"
  [ "$(getent passwd mediamail | cut -d: -f7)" = /usr/sbin/nologin ] || mm_fail "user mediamail has a login shell"
  expect_stat /usr/sbin/mm-gateway "root:root 755"
  expect_stat /usr/sbin/mm-milter "root:root 755"
  expect_stat /usr/bin/mm-fetcher "root:root 755"
  expect_stat /usr/bin/mmsend "root:root 755"
  expect_stat /etc/mediamail/mediamail.conf "root:root 644"
  cmp -s /etc/mediamail/mediamail.conf "$MM_SOURCE_DIR/conf/mediamail.conf" || mm_fail "the installed config is not conf/mediamail.conf"
  expect_stat /var/lib/mediamail "mediamail:mediamail 750"
  expect_stat /var/cache/mediamail "mediamail:mediamail 750"
  if [ -d /var/spool/postfix ] && getent group postfix >/dev/null; then
    expect_stat /var/spool/postfix/mediamail "mediamail:postfix 750"
  fi
  # The store holds the TLS key: nobody else may even look in.
  local as_nobody=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
  "${as_nobody[@]}" ls /var/lib >/dev/null || mm_fail "cannot run a command as user nobody"
  if "${as_nobody[@]}" ls /var/lib/mediamail >/dev/null 2>&1; then
    mm_fail "user nobody can list /var/lib/mediamail"
  fi
  mm_log "user, group, binaries, conffile and directories with their owners and modes"
}

# Each installed page renders without a warning, and every page it names in
# SEE ALSO, and every page the programs' --help names, exists.
pkg_check_man() {
  local page refs ref
  for page in "${MAN_PAGES[@]}"; do
    local path=/usr/share/man/$page.gz
    [ -f "$path" ] || mm_fail "$path not installed"
    gzip -t "$path" || mm_fail "$path is not gzip"
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$path" >"$MM_TMP/man.txt" 2>"$MM_TMP/man.err" ||
      mm_fail "man -l $path failed: $(head -3 "$MM_TMP/man.err")"
    [ ! -s "$MM_TMP/man.err" ] || mm_fail "man --warnings on $path: $(head -5 "$MM_TMP/man.err")"
    grep -q '^NAME' "$MM_TMP/man.txt" || mm_fail "$path renders without a NAME section"
    refs=$(sed -n '/^SEE ALSO/,$p' "$MM_TMP/man.txt" | grep -oE '[a-z][a-z0-9.-]*\([0-9]\)' || true)
    [ -n "$refs" ] || mm_fail "$path has no SEE ALSO references"
    for ref in $refs; do
      man -w "${ref%%(*}.${ref//[^0-9]/}" >/dev/null 2>&1 || man -w "${ref//[^0-9]/}" "${ref%%(*}" >/dev/null 2>&1 ||
        mm_fail "$path refers to $ref, which does not exist"
    done
  done
  grep -q 'gateway.public_url' <(zcat /usr/share/man/man5/mediamail.conf.5.gz) || mm_fail "mediamail.conf(5) lacks gateway.public_url"
  local prog
  for prog in /usr/sbin/mm-gateway /usr/sbin/mm-milter /usr/bin/mm-fetcher /usr/bin/mmsend; do
    "$prog" --help >"$MM_TMP/help.txt" 2>&1 || mm_fail "$prog --help failed"
    for ref in $(grep -oE '[a-z][a-z0-9.-]*\([0-9]\)' "$MM_TMP/help.txt" || true); do
      man -w "${ref//[^0-9]/}" "${ref%%(*}" >/dev/null 2>&1 || mm_fail "$prog --help names $ref, which does not exist"
    done
  done
  mm_log "${#MAN_PAGES[@]} man pages render cleanly; SEE ALSO and --help name only existing pages"
}

pkg_check_units() {
  systemd-analyze verify "${SYSTEM_UNITS[@]}" >"$MM_TMP/verify.out" 2>&1 ||
    mm_fail "systemd-analyze verify: $(cat "$MM_TMP/verify.out")"
  [ ! -s "$MM_TMP/verify.out" ] || mm_fail "systemd-analyze verify complains: $(cat "$MM_TMP/verify.out")"
  mkdir -m 700 "$MM_TMP/xdg"
  XDG_RUNTIME_DIR=$MM_TMP/xdg systemd-analyze --user verify "$USER_UNIT" >"$MM_TMP/verify-user.out" 2>&1 ||
    mm_fail "systemd-analyze --user verify: $(cat "$MM_TMP/verify-user.out")"
  [ ! -s "$MM_TMP/verify-user.out" ] || mm_fail "systemd-analyze --user verify complains: $(cat "$MM_TMP/verify-user.out")"
  local unit
  for unit in "${SYSTEM_UNITS[@]}"; do
    grep -qx 'User=mediamail' "$unit" || mm_fail "$unit does not run as mediamail"
    # shellcheck disable=SC2016 # the unit's literal $MAINPID
    grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || mm_fail "$unit has no SIGHUP reload"
  done
  mm_log "systemd-analyze verify passes on the installed system and user units"
}

# Start the installed mm-gateway as user mediamail (setpriv execs it, so $! is the
# gateway itself) with the installed config, the store where the package puts it,
# and a free loopback port; put a file in as mediamail and fetch it with curl,
# pinned. Sets GW_PID, GW_PORT, GW_PIN.
pkg_gateway_start() {
  GW_PORT=$(mm_free_port)
  GW_OPTS=(-c /etc/mediamail/mediamail.conf --set "gateway.listen=127.0.0.1:$GW_PORT"
    --set "gateway.public_url=https://127.0.0.1:$GW_PORT" --set gateway.threads=2)
  setpriv --reuid=mediamail --regid=mediamail --init-groups -- \
    /usr/sbin/mm-gateway "${GW_OPTS[@]}" serve >"$MM_TMP/gateway.log" 2>&1 &
  GW_PID=$!
  mm_register_pid "$GW_PID"
  mm_wait_port "$GW_PORT" 20 || mm_fail "the installed mm-gateway did not start: $(tail -5 "$MM_TMP/gateway.log")"
  GW_PIN=$(awk '/pin sha256/{print $3}' "$MM_TMP/gateway.log")
  [ -n "$GW_PIN" ] || mm_fail "mm-gateway printed no pin: $(tail -5 "$MM_TMP/gateway.log")"
  [ "$(ps -o user= -p "$GW_PID")" = mediamail ] || mm_fail "mm-gateway runs as $(ps -o user= -p "$GW_PID"), not mediamail"
  mm_log "installed mm-gateway runs as mediamail on 127.0.0.1:$GW_PORT, pin $GW_PIN"
}

pkg_gateway_serves() {
  local media=$MM_TMP/media.mp4 out
  mm_random_mp4 "$media" 300000
  chmod 644 "$media"
  out=$(setpriv --reuid=mediamail --regid=mediamail --init-groups -- \
    /usr/sbin/mm-gateway "${GW_OPTS[@]}" put "$media" --type video/mp4) || mm_fail "mm-gateway put as mediamail failed"
  local url
  url=$(awk '/^url:/{print $2}' <<<"$out")
  [ "$(awk '/^pin:/{print $2}' <<<"$out")" = "$GW_PIN" ] || mm_fail "put printed another pin than the server's"
  curl -sS --max-time 30 -k --pinnedpubkey "$GW_PIN" -o "$MM_TMP/got.mp4" "$url" || mm_fail "curl $url failed"
  cmp -s "$media" "$MM_TMP/got.mp4" || mm_fail "the gateway served other bytes than were put"
  # A client pinning another key is refused: the pin is what the handles carry.
  if curl -sS --max-time 10 -k --pinnedpubkey "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" \
    -o /dev/null "$url" 2>/dev/null; then
    mm_fail "curl with a wrong pin got the media"
  fi
  local f
  for f in /var/lib/mediamail/store /var/lib/mediamail/store/index.sqlite /var/lib/mediamail/store/tls/key.pem; do
    [ "$(stat -c %U "$f")" = mediamail ] || mm_fail "$f belongs to $(stat -c %U "$f"), not mediamail"
  done
  [ "$(stat -c %a /var/lib/mediamail/store/tls/key.pem)" = 600 ] ||
    mm_fail "the TLS key is mode $(stat -c %a /var/lib/mediamail/store/tls/key.pem)"
  mm_log "served $(stat -c %s "$media") bytes over pinned HTTPS from the store in /var/lib/mediamail"
}

pkg_gateway_stop() {
  kill -TERM "$GW_PID"
  local rc=0
  wait "$GW_PID" || rc=$?
  [ "$rc" = 0 ] || mm_fail "mm-gateway exited $rc after SIGTERM"
  mm_log "mm-gateway stopped cleanly on SIGTERM"
}

pkg_purge() {
  dpkg --purge "$PKG" >"$MM_TMP/dpkg-purge.out" 2>&1 || mm_fail "dpkg --purge failed: $(tail -10 "$MM_TMP/dpkg-purge.out")"
  PKG_INSTALLED_BY_US=0
  ! pkg_known || mm_fail "dpkg still knows $PKG after --purge"
  local f
  for f in /usr/sbin/mm-gateway /usr/sbin/mm-milter /usr/bin/mm-fetcher /usr/bin/mmsend /etc/mediamail \
    "${SYSTEM_UNITS[@]}" "$USER_UNIT" /usr/lib/sysusers.d/mediamail.conf /usr/lib/tmpfiles.d/mediamail.conf \
    /usr/share/doc/mediamail /var/lib/mediamail /var/cache/mediamail /var/spool/postfix/mediamail; do
    [ ! -e "$f" ] || mm_fail "$f is still there after dpkg --purge"
  done
  for f in "${MAN_PAGES[@]}"; do
    [ ! -e "/usr/share/man/$f.gz" ] || mm_fail "/usr/share/man/$f.gz is still there after dpkg --purge"
  done
  # Debian policy lets the system user stay: files elsewhere may belong to it.
  mm_log "dpkg --purge removed files, config, state and cache (user mediamail stays, as policy allows)"
}

mm_tmpdir_init
trap pkg_on_exit EXIT
pkg_preconditions
pkg_build_tree
pkg_build_deb
pkg_check_contents
pkg_lintian
pkg_install
pkg_check_files
pkg_check_man
pkg_check_units
pkg_gateway_start
pkg_gateway_serves
# More checks of the installed programs go here, while the package is
# installed: the milter through the test harness's Postfix, SIGHUP in the
# middle of traffic, --check, --version, /healthz, /metrics.
pkg_gateway_stop
pkg_purge
echo "package.test.sh: all checks passed"
