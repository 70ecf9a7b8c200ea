#!/usr/bin/env bash
# package.test.sh - the Debian package end to end: cpack -G DEB, lintian, dpkg -i
# on this machine, files, owners and modes, man pages, systemd-analyze verify on
# the installed units; then the installed mm-gateway and mm-milter, started as
# root with the installed config, drop to mediamail and carry media mails through
# the harness's Postfix (issue 17, "Proof"): pinned fetches, SIGHUP in the middle
# of traffic, --check, --version, /healthz, /metrics, the traced log lines of one
# mail, SIGTERM; then dpkg --purge (also on failure, from the EXIT trap).
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
  # The daemons and Postfix first: nothing of the package may be running while it goes.
  mm_stack_stop
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
  # The installed config is the documented one with exactly two lines set: the
  # milter on the unix socket in Postfix's chroot (docs/postfix.md, docs/deploy.md).
  diff "$MM_SOURCE_DIR/conf/mediamail.conf" /etc/mediamail/mediamail.conf | grep '^[<>]' >"$MM_TMP/conf.diff" || true
  printf '%s\n' '< #socket = inet:8891@127.0.0.1' '< #socket_group =' \
    '> socket = unix:/var/spool/postfix/mediamail/milter.sock' '> socket_group = postfix' | sort >"$MM_TMP/conf.want"
  sort "$MM_TMP/conf.diff" | cmp -s - "$MM_TMP/conf.want" ||
    mm_fail "the installed config differs from conf/mediamail.conf in more than the milter socket: $(cat "$MM_TMP/conf.diff")"
  (cd /tmp && /usr/sbin/mm-milter --check >"$MM_TMP/check-default" 2>&1) || true
  grep -qx "milter.socket = unix:/var/spool/postfix/mediamail/milter.sock" "$MM_TMP/check-default" ||
    mm_fail "mm-milter --check does not show the installed unix socket: $(head -5 "$MM_TMP/check-default")"
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

# The installed daemons are started AS ROOT with the installed config plus these
# overrides and drop to mediamail themselves (gateway.user, milter.user), as a
# system without systemd would run them. Each logs to a file in a directory
# mediamail can write: SIGHUP reopens it after the drop.
pkg_common_opts() {
  GW_PORT=$(mm_free_port)
  ADMIN_PORT=$(mm_free_port)
  LOG_DIR=$MM_TMP/log
  install -d -o mediamail -g mediamail -m 750 "$LOG_DIR"
  GW_LOG=$LOG_DIR/mm-gateway.log
  MI_LOG=$LOG_DIR/mm-milter.log
  SOCK_DIR=$MM_TMP/milter
  install -d -o mediamail -g postfix -m 750 "$SOCK_DIR"
  SOCK=$SOCK_DIR/milter.sock
  # GW_OPTS: what "mm-gateway put" as mediamail needs too; GW_RUN: the daemon's own.
  GW_OPTS=(-c /etc/mediamail/mediamail.conf --set "gateway.listen=127.0.0.1:$GW_PORT"
    --set "gateway.public_url=https://127.0.0.1:$GW_PORT" --set gateway.threads=2)
  GW_RUN=(--set gateway.user=mediamail --set "gateway.admin_listen=127.0.0.1:$ADMIN_PORT"
    --set log.target=file --set "log.file=$GW_LOG")
  MI_OPTS=(-c /etc/mediamail/mediamail.conf --set "gateway.public_url=https://127.0.0.1:$GW_PORT"
    --set "milter.socket=unix:$SOCK" --set milter.socket_mode=0660 --set milter.socket_group=postfix
    --set milter.user=mediamail --set log.target=file --set "log.file=$MI_LOG")
}

# expect_owner PID NAME: all four uids and gids of PID are mediamail's.
expect_owner() {
  local uid gid
  uid=$(id -u mediamail)
  gid=$(id -g mediamail)
  awk '/^Uid:/{print $2, $3, $4, $5}' "/proc/$1/status" | grep -qx "$uid $uid $uid $uid" &&
    awk '/^Gid:/{print $2, $3, $4, $5}' "/proc/$1/status" | grep -qx "$gid $gid $gid $gid" ||
    mm_fail "$2 runs with $(grep -E '^(Uid|Gid):' "/proc/$1/status" | tr '\n\t' '  '), not mediamail's $uid/$gid"
}

# Start the installed mm-gateway as root; it drops to mediamail. Sets GW_PID, GW_PIN.
pkg_gateway_start() {
  /usr/sbin/mm-gateway "${GW_OPTS[@]}" "${GW_RUN[@]}" serve >"$MM_TMP/gateway.out" 2>&1 &
  GW_PID=$!
  mm_register_pid "$GW_PID"
  echo "$GW_PID" >"$MM_TMP/installed-mm-gateway.pid"
  mm_wait_port "$GW_PORT" 20 || mm_fail "the installed mm-gateway did not start: $(tail -5 "$MM_TMP/gateway.out" "$GW_LOG")"
  mm_wait_port "$ADMIN_PORT" 20 || mm_fail "gateway.admin_listen not up: $(tail -5 "$GW_LOG")"
  GW_PIN=$(awk '/pin sha256/{print $3}' "$MM_TMP/gateway.out")
  [ -n "$GW_PIN" ] || mm_fail "mm-gateway printed no pin: $(tail -5 "$MM_TMP/gateway.out")"
  expect_owner "$GW_PID" mm-gateway
  grep -q "running as user=mediamail" "$GW_LOG" || mm_fail "no 'running as' line in $GW_LOG"
  mm_log "installed mm-gateway started as root runs as mediamail on 127.0.0.1:$GW_PORT, pin $GW_PIN"
}

# Start the installed mm-milter as root on a unix socket for Postfix; it drops to mediamail.
pkg_milter_start() {
  /usr/sbin/mm-milter "${MI_OPTS[@]}" >"$MM_TMP/milter.out" 2>&1 &
  MI_PID=$!
  mm_register_pid "$MI_PID"
  echo "$MI_PID" >"$MM_TMP/installed-mm-milter.pid"
  mm_wait_for 20 test -S "$SOCK" || mm_fail "no milter socket: $(tail -5 "$MM_TMP/milter.out" "$MI_LOG")"
  mm_wait_for 10 grep -q "running as user=mediamail" "$MI_LOG" || mm_fail "mm-milter did not drop to mediamail: $(tail -5 "$MI_LOG")"
  [ "$(stat -c '%a %G' "$SOCK")" = "660 postfix" ] || mm_fail "milter socket is $(stat -c '%a %G' "$SOCK"), not 660 postfix"
  expect_owner "$MI_PID" mm-milter
  mm_postfix_start "unix:$SOCK"
  mm_log "installed mm-milter started as root runs as mediamail; socket 660 group postfix; Postfix uses it"
}

# pkg_mail FILE MEDIA MESSAGE-ID SUBJECT: a mail with MEDIA attached as video/mp4.
pkg_mail() {
  printf 'Message-ID: %s\r\n' "$3" >"$1"
  mm_make_media_mail "$2" "$1.body" video/mp4 "$4"
  cat "$1.body" >>"$1"
  rm -f "$1.body"
}

# The delivered mail with Message-ID MID in bob's Maildir.
delivered() {
  grep -rlF "Message-ID: $1" "$MM_MAIL_DIR/bob/Maildir/new" "$MM_MAIL_DIR/bob/Maildir/cur" 2>/dev/null | head -1
}

# check_handles FILE MEDIA: FILE has one location part, with the gateway's pin and
# MEDIA's hash; its URL serves MEDIA byte for byte to curl pinning that key.
check_handles() {
  local handles url pin sha
  handles=$(mm_handles "$1")
  [ "$(wc -l <<<"$handles")" = 1 ] && [ -n "$handles" ] || mm_fail "$1 has not one location part: $handles"
  read -r url pin sha <<<"$handles"
  [ "$pin" = "$GW_PIN" ] || mm_fail "the handle's pin $pin is not the gateway's $GW_PIN"
  [ "$sha" = "$(sha256sum <"$2" | cut -d' ' -f1)" ] || mm_fail "the handle's sha256 is not the media's"
  curl -sS --max-time 30 -k --pinnedpubkey "$pin" -o "$MM_TMP/fetched.bin" "$url" || mm_fail "curl $url failed"
  cmp -s "$2" "$MM_TMP/fetched.bin" || mm_fail "$url served other bytes than $2"
  HANDLE_URL=$url
}

curl_() { curl -sS --max-time 10 "$@"; }
# metric NAME: the value of one sample of the gateway's /metrics.
metric() { curl_ "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }

# One media mail through Postfix and the installed milter; fetched from the
# installed gateway; its trace in both logs; /healthz and /metrics.
pkg_media_mail() {
  [ "$(curl_ "http://127.0.0.1:$ADMIN_PORT/healthz")" = ok ] || mm_fail "gateway /healthz not ok"
  [ "$(curl_ -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT/healthz")" = 200 ] || mm_fail "/healthz not 200"
  curl_ -o "$MM_TMP/metrics0" "http://127.0.0.1:$ADMIN_PORT/metrics"
  local fam
  for fam in mm_gateway_items mm_gateway_store_bytes mm_gateway_served_bytes_total mm_gateway_active_transfers \
    mm_gateway_receipts_total mm_gateway_errors_total mm_gateway_refused_total; do
    grep -q "^# HELP $fam " "$MM_TMP/metrics0" && grep -q "^# TYPE $fam " "$MM_TMP/metrics0" ||
      mm_fail "no HELP/TYPE for $fam in /metrics"
  done
  local served0
  served0=$(metric mm_gateway_served_bytes_total)

  CLIP=$MM_TMP/clip.mp4
  mm_random_mp4 "$CLIP" $((2 * 1048576))
  local sha mid="<pkg.$$.$RANDOM@example.test>"
  sha=$(sha256sum <"$CLIP" | cut -d' ' -f1)
  pkg_mail "$MM_TMP/media.eml" "$CLIP" "$mid" "Package proof"
  mm_swaks_send_file alice@example.test bob@example.test "$MM_TMP/media.eml"
  mm_wait_delivered bob 1 60 || mm_fail "the media mail was not delivered: $(tail -5 "$MI_LOG")"
  local f
  f=$(delivered "$mid")
  [ -n "$f" ] || mm_fail "no delivered mail with Message-ID $mid"
  check_handles "$f" "$CLIP"
  mm_log "a $(stat -c %s "$CLIP")-byte video went through Postfix and the installed milter; fetched pinned, byte-identical"

  local line qid item
  line=$(grep "detached 1" "$MI_LOG" | grep -F "message_id=$mid" | tail -1)
  [ -n "$line" ] || mm_fail "no milter line with message_id=$mid: $(tail -3 "$MI_LOG")"
  [[ "$line" =~ \ queue_id=([0-9A-Za-z]+) ]] || mm_fail "no queue_id= on the milter line: $line"
  qid=${BASH_REMATCH[1]}
  grep -q "$qid" "$MM_POSTFIX_LOG" || mm_fail "queue id $qid is not in Postfix's log"
  [[ "$line" =~ \ item=([0-9a-f]{32}) ]] || mm_fail "no item= on the milter line: $line"
  item=${BASH_REMATCH[1]}
  [[ "$HANDLE_URL" == */m/$item/* ]] || mm_fail "the handle's URL $HANDLE_URL is not item $item"
  [[ "$line" =~ \ hash=([0-9a-f]{12}) ]] && [ "${BASH_REMATCH[1]}" = "${sha:0:12}" ] ||
    mm_fail "the milter line has not hash=${sha:0:12}: $line"
  grep -qE "GET 200 .* item=$item client=127.0.0.1 status=200" "$GW_LOG" ||
    mm_fail "no gateway access line with item=$item: $(tail -3 "$GW_LOG")"
  mm_log "traced: milter queue_id=$qid message_id=$mid item=$item hash=${sha:0:12}; gateway GET 200 item=$item"

  local served1
  served1=$(metric mm_gateway_served_bytes_total)
  [ "$((served1 - served0))" -ge $((2 * 1048576)) ] || mm_fail "served bytes went from $served0 to only $served1"
  [ "$(metric 'mm_gateway_items{state="active"}')" -ge 2 ] || mm_fail "not 2 active items in /metrics"
  mm_log "/healthz 200 ok; /metrics HELP/TYPE; served bytes $served0 -> $served1 after the download"
}

# SIGHUP to each daemon in the middle of traffic: a slow download from the
# gateway, several mails through the milter; each log moved away first.
pkg_hup_in_traffic() {
  local big=$MM_TMP/big.mp4 out url pin
  mm_random_mp4 "$big" 6000000
  chmod 644 "$big"
  out=$(setpriv --reuid=mediamail --regid=mediamail --init-groups -- \
    /usr/sbin/mm-gateway "${GW_OPTS[@]}" put "$big" --type video/mp4) || mm_fail "mm-gateway put as mediamail failed"
  url=$(awk '/^url:/{print $2}' <<<"$out")
  pin=$(awk '/^pin:/{print $2}' <<<"$out")
  curl -sS -k --pinnedpubkey "$pin" --limit-rate 2M -o "$MM_TMP/got-big.mp4" "$url" &
  local dl=$!
  mm_wait_for 10 test -s "$MM_TMP/got-big.mp4" || mm_fail "the slow download did not start"
  mv "$GW_LOG" "$GW_LOG.1"
  kill -HUP "$GW_PID"

  local n=4 i before senders=() mids=()
  before=$(mm_count_messages bob)
  for i in $(seq 1 $n); do
    mm_random_mp4 "$MM_TMP/hup$i.mp4" $((1024 * 1024 + i * 4096))
    mids[i]="<hup$i.$$.$RANDOM@example.test>"
    pkg_mail "$MM_TMP/hup$i.eml" "$MM_TMP/hup$i.mp4" "${mids[i]}" "Under SIGHUP $i"
  done
  local detached0
  detached0=$(grep -c "detached 1" "$MI_LOG" || true)
  for i in $(seq 1 $n); do
    swaks --server "127.0.0.1:$MM_SMTP_PORT" --from alice@example.test --to bob@example.test \
      --data "@$MM_TMP/hup$i.eml" >"$MM_TMP/swaks$i.out" 2>&1 &
    senders+=($!)
  done
  # HUP once the first mail has passed, the others on their way.
  mm_wait_for 60 bash -c "[ \"\$(grep -c 'detached 1' '$MI_LOG')\" -gt $detached0 ]" ||
    mm_fail "no mail passed the milter: $(tail -3 "$MI_LOG")"
  mv "$MI_LOG" "$MI_LOG.1"
  kill -HUP "$MI_PID"
  for i in $(seq 1 $n); do
    wait "${senders[i - 1]}" || mm_fail "sending mail $i during SIGHUP failed: $(tail -5 "$MM_TMP/swaks$i.out")"
  done
  kill -HUP "$MI_PID"
  mm_wait_delivered bob $((before + n)) 60 || mm_fail "not all $n mails sent during SIGHUP were delivered"
  for i in $(seq 1 $n); do
    local f
    f=$(delivered "${mids[i]}")
    [ -n "$f" ] || mm_fail "mail $i ${mids[i]} was lost"
    check_handles "$f" "$MM_TMP/hup$i.mp4"
  done
  wait "$dl" || mm_fail "the slow download was cut by SIGHUP"
  cmp -s "$big" "$MM_TMP/got-big.mp4" || mm_fail "the slow download differs from the media"
  kill -0 "$GW_PID" && kill -0 "$MI_PID" || mm_fail "a daemon died on SIGHUP"
  [ "$(curl_ "http://127.0.0.1:$ADMIN_PORT/healthz")" = ok ] || mm_fail "gateway /healthz not ok after SIGHUP"
  local log
  for log in "$GW_LOG" "$MI_LOG"; do
    [ -f "$log" ] || mm_fail "$log not recreated after SIGHUP"
    [ "$(stat -c %U "$log")" = mediamail ] || mm_fail "$log recreated by $(stat -c %U "$log"), not mediamail"
    grep -q "reloaded configuration" "$log" || mm_fail "no reload line in the new $log: $(cat "$log")"
  done
  grep -qE "GET 200 .* item=" "$GW_LOG" || mm_fail "the new gateway log gets no access lines"
  # The four mails may all have passed before the first HUP: one more, after it.
  mm_random_mp4 "$MM_TMP/hup-after.mp4" $((1024 * 1024))
  pkg_mail "$MM_TMP/hup-after.eml" "$MM_TMP/hup-after.mp4" "<hup-after.$$@example.test>" "After SIGHUP"
  swaks --server "127.0.0.1:$MM_SMTP_PORT" --from alice@example.test --to bob@example.test \
    --data "@$MM_TMP/hup-after.eml" >"$MM_TMP/swaks-after.out" 2>&1 || mm_fail "sending after SIGHUP failed"
  mm_wait_for 30 grep -q "detached 1" "$MI_LOG" || mm_fail "the new milter log gets no detach lines"
  mm_log "SIGHUP during a slow download and $n mails: download whole, $n delivered with fetchable handles, both up, moved logs recreated and written"
}

# --check on the installed config (0, the non-default settings) and a bad one (78);
# --version and the exit-code table of the four installed programs.
pkg_check_cli() {
  /usr/sbin/mm-gateway "${GW_OPTS[@]}" "${GW_RUN[@]}" --check >"$MM_TMP/check" 2>"$MM_TMP/check.err" ||
    mm_fail "mm-gateway --check on the installed config failed: $(cat "$MM_TMP/check.err")"
  cat >"$MM_TMP/want" <<W
gateway.admin_listen = 127.0.0.1:$ADMIN_PORT
gateway.listen = 127.0.0.1:$GW_PORT
gateway.public_url = https://127.0.0.1:$GW_PORT
gateway.threads = 2
gateway.user = mediamail
log.file = $GW_LOG
log.target = file
W
  diff "$MM_TMP/want" "$MM_TMP/check" >&2 || mm_fail "mm-gateway --check listing differs (above)"
  /usr/sbin/mm-milter "${MI_OPTS[@]}" --check >"$MM_TMP/check" 2>"$MM_TMP/check.err" ||
    mm_fail "mm-milter --check on the installed config failed: $(cat "$MM_TMP/check.err")"
  grep -qx "milter.socket = unix:$SOCK" "$MM_TMP/check" && grep -qx "milter.socket_group = postfix" "$MM_TMP/check" ||
    mm_fail "mm-milter --check listing: $(cat "$MM_TMP/check")"
  cp /etc/mediamail/mediamail.conf "$MM_TMP/bad.conf"
  printf '\n[gateway]\nthreads = many\n' >>"$MM_TMP/bad.conf"
  local p rc
  for p in /usr/sbin/mm-gateway /usr/sbin/mm-milter; do
    rc=0
    "$p" -c "$MM_TMP/bad.conf" --check >/dev/null 2>"$MM_TMP/check.err" || rc=$?
    [ "$rc" = 78 ] && grep -q "bad value for gateway.threads = 'many'" "$MM_TMP/check.err" ||
      mm_fail "$p --check on a bad config: exit $rc, $(cat "$MM_TMP/check.err")"
  done
  mm_check_version_help /usr/sbin/mm-gateway /usr/sbin/mm-milter /usr/bin/mm-fetcher /usr/bin/mmsend
  mm_log "--check: 0 with the non-default settings, 78 on a bad value; --version $MM_VERSION and the exit codes in --help"
}

# SIGTERM: both exit 0; nothing they made in the store belongs to root.
pkg_daemons_stop() {
  mm_stop_program installed-mm-gateway
  mm_stop_program installed-mm-milter
  grep -q "stopping signal=SIGTERM" "$GW_LOG" && grep -q "stopping signal=SIGTERM" "$MI_LOG" ||
    mm_fail "no stopping line in the logs"
  local stray
  stray=$(find /var/lib/mediamail ! -user mediamail)
  [ -z "$stray" ] || mm_fail "files in /var/lib/mediamail not owned by mediamail: $stray"
  mm_log "both daemons exit 0 on SIGTERM; everything in /var/lib/mediamail belongs to mediamail"
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
pkg_common_opts
pkg_gateway_start
pkg_gateway_serves
pkg_milter_start
pkg_media_mail
pkg_hup_in_traffic
pkg_check_cli
pkg_daemons_stop
pkg_purge
echo "package.test.sh: all checks passed"
