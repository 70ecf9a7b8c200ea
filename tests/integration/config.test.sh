#!/usr/bin/env bash
# config.test.sh - every program: --help works, a bad configuration is refused
# at start naming the key and the value, and `cmake --install` lays out the
# programs and the sample config where the README says.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
mm_tmpdir_init

for prog in mm-gateway mm-milter mm-fetcher; do
  bin=$(mm_bin "$prog")
  "$bin" --help >"$MM_TMP/help.out" 2>&1 || mm_fail "$prog --help failed"
  grep -q "usage: $prog" "$MM_TMP/help.out" || mm_fail "$prog --help prints no usage"
  # The keys come from the table in core/config.cpp, with syntax and default.
  grep -qF "log.level (one of error|warning|info|debug; default info)" "$MM_TMP/help.out" ||
    mm_fail "$prog --help does not list its keys from the table"

  # Each case: arguments, and a text the error must contain.
  while IFS='|' read -r args want; do
    rc=0
    # shellcheck disable=SC2086
    timeout 10 "$bin" $args >"$MM_TMP/err.out" 2>&1 || rc=$?
    # 78 is EX_CONFIG (sysexits.h), the same for every program.
    [ $rc -eq 78 ] || mm_fail "$prog $args: exit status $rc, want 78 (EX_CONFIG)"
    grep -qF -- "$want" "$MM_TMP/err.out" || mm_fail "$prog $args: error does not say '$want': $(head -c 300 "$MM_TMP/err.out")"
  done <<EOF2
--set milter.min_size=12Q|milter.min_size = '12Q'
--set fetcher.listen=127.0.0.1:99999|fetcher.listen = '127.0.0.1:99999'
--set gateway.public_url=http://plain.example|gateway.public_url = 'http://plain.example'
--set store.speling=1|unknown key 'store.speling'
--set fetcher.parallel=65|--set: bad value for fetcher.parallel = '65': must be from 1 to 64
--set gateway.timeout=0|--set: bad value for gateway.timeout = '0': must be at least 1s
--set milter.on_error=drop|--set: bad value for milter.on_error = 'drop': expected one of tempfail|accept
EOF2
  # A configuration file named with -c that does not exist: 66 (EX_NOINPUT,
  # docs/exit-codes.md), with the path; without -c a missing default is no error.
  rc=0
  timeout 10 "$bin" -c "$MM_TMP/does-not-exist.conf" >"$MM_TMP/err.out" 2>&1 || rc=$?
  [ $rc -eq 66 ] || mm_fail "$prog -c missing file: exit status $rc, want 66 (EX_NOINPUT)"
  grep -qF -- "$MM_TMP/does-not-exist.conf" "$MM_TMP/err.out" || mm_fail "$prog: the missing file is not named"
  mm_log "$prog: --help, and bad configuration refused (exit 78) naming key and value"
done

printf '[fetcher]\nallow_private = perhaps\n' >"$MM_TMP/bad.conf"
rc=0
"$(mm_bin mm-fetcher)" -c "$MM_TMP/bad.conf" >"$MM_TMP/err.out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -qF "bad.conf:2: bad value for fetcher.allow_private = 'perhaps'" "$MM_TMP/err.out" ||
  mm_fail "a bad value in a file is not reported with file and line: $(head -c 300 "$MM_TMP/err.out")"
mm_log "a bad value in the file is reported with file, line, key and value"

# A check between two keys of one program (Config::verify), in the same form.
rc=0
"$(mm_bin mm-milter)" --set milter.socket= >"$MM_TMP/err.out" 2>&1 || rc=$?
[ $rc -eq 78 ] && grep -qF "bad value for milter.socket = '': milter.proxy_listen is empty too" "$MM_TMP/err.out" ||
  mm_fail "mm-milter with nothing to listen on: exit $rc: $(head -c 300 "$MM_TMP/err.out")"
mm_log "a check between keys names the key, its value and the other key"

cmake --install "$MM_BUILD_DIR" --prefix "$MM_TMP/prefix" >/dev/null
for f in sbin/mm-gateway sbin/mm-milter bin/mm-fetcher bin/mmsend etc/mediamail/mediamail.conf; do
  [ -e "$MM_TMP/prefix/$f" ] || mm_fail "cmake --install did not install $f"
done
"$MM_TMP/prefix/bin/mm-fetcher" --help >/dev/null || mm_fail "installed mm-fetcher does not run"
mm_log "cmake --install puts the daemons in sbin/, the commands in bin/ and the sample config in etc/mediamail/"
echo "config: 1 passed, 0 failed"
