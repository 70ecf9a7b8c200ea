#!/usr/bin/env bash
# service.test.sh - the four programs run as services (issue 17): the exit-code
# table and its causes, --version, --check, SIGHUP (log reopened, new TLS
# certificate served, download not cut, process up), SIGTERM (one line, exit 0),
# one listener per port, the privilege drop, the milter socket's mode and group,
# admin commands that create nothing, and mmsend -t without media as nobody.
set -euo pipefail
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_write_conf
mkdir -p "$MM_STORE"
GW=$(mm_bin mm-gateway) MI=$(mm_bin mm-milter) FE=$(mm_bin mm-fetcher) MS=$(mm_bin mmsend)
[ "$(id -u)" = 0 ] || mm_fail "needs root (privilege drop, socket group, runs as nobody)"

# expect_exit CODE PATTERN CMD...: CMD exits CODE and its stderr matches PATTERN (grep -E).
expect_exit() {
  local want=$1 pattern=$2 rc=0
  shift 2
  "$@" >"$MM_TMP/out" 2>"$MM_TMP/err" </dev/null || rc=$?
  [ "$rc" = "$want" ] || mm_fail "$* exited $rc, not $want: $(head -c 600 "$MM_TMP/err")"
  [ -z "$pattern" ] || grep -Eq -- "$pattern" "$MM_TMP/err" ||
    mm_fail "$*: stderr does not match '$pattern': $(head -c 600 "$MM_TMP/err")"
}
alive() { kill -0 "$1" 2>/dev/null; }
# stop_ok PID NAME: SIGTERM; NAME must exit 0 within 15 s (not in a subshell: wait needs the parent).
stop_ok() {
  local rc=0
  kill -TERM "$1"
  mm_wait_for 15 bash -c "! kill -0 $1 2>/dev/null" || mm_fail "$2 still running 15 s after SIGTERM"
  wait "$1" || rc=$?
  [ "$rc" = 0 ] || mm_fail "$2 exited $rc on SIGTERM, not 0"
}

echo "checking: --version and the exit-code table in --help, all four programs"
mm_check_version_help "$GW" "$MI" "$FE" "$MS"
mm_log "--version says $MM_VERSION; --help prints the exit codes"

echo "checking: causes common to every program: 64, 66, 78"
for p in "$GW" "$MI" "$FE"; do
  expect_exit 64 "" "$p" -c "$MM_CONF" --no-such-option
  expect_exit 66 "$MM_TMP/missing.conf" "$p" -c "$MM_TMP/missing.conf" --check
  expect_exit 78 "bad value for log.level = 'loud'" "$p" -c "$MM_CONF" --set log.level=loud --check
  expect_exit 78 "log.file is empty" "$p" -c "$MM_CONF" --set log.target=file --check
done
expect_exit 64 "" "$MS" --no-such-option
expect_exit 66 "$MM_TMP/missing.conf" "$MS" -c "$MM_TMP/missing.conf" --check
expect_exit 78 "bad value for log.level" "$MS" -c "$MM_CONF" --set log.level=loud --check
for p in "$GW" "$MI" "$MS"; do
  expect_exit 78 "gateway.tls_key is empty: set both or neither" \
    "$p" -c "$MM_CONF" --set gateway.tls_cert=/etc/ssl/certs/none.pem --check
done
mm_log "64 bad argument, 66 missing -c file, 78 bad value or half a TLS pair"

echo "checking: --check lists the non-default keys like postconf -n, and fails on a bad public_url"
"$GW" -c "$MM_CONF" --set gateway.threads=3 --check >"$MM_TMP/check" || mm_fail "--check on a good config failed"
cat >"$MM_TMP/want" <<W
gateway.listen = 127.0.0.1:$MM_GATEWAY_PORT
gateway.public_url = https://127.0.0.1:$MM_GATEWAY_PORT
gateway.threads = 3
store.dir = $MM_STORE
W
diff "$MM_TMP/want" "$MM_TMP/check" >&2 || mm_fail "--check listing differs"
expect_exit 78 "gateway.public_url.*loopback" "$GW" -c "$MM_CONF" --set gateway.listen=0.0.0.0:1 \
  --set gateway.public_url=https://localhost:1 --check
expect_exit 78 "fetcher.upstream_ca.*cannot be read" "$FE" -c "$MM_CONF" --set fetcher.upstream_ca=/nonexistent.pem --check
expect_exit 78 "milter.socket_group.*no group" "$MI" -c "$MM_CONF" --set milter.socket_group=no-such-group-x --check
mm_log "--check: sorted non-default listing, 78 naming the key"

echo "checking: admin commands on a missing store: 66, nothing created"
for cmd in list stats gc "show 123456" "revoke 123456"; do
  # shellcheck disable=SC2086
  expect_exit 66 "no store there" "$GW" -c "$MM_CONF" --set store.dir="$MM_TMP/absent/store" $cmd
done
[ ! -e "$MM_TMP/absent" ] || mm_fail "an admin command created $MM_TMP/absent"
mkdir "$MM_TMP/empty"
expect_exit 66 "no store there" "$GW" -c "$MM_CONF" --set store.dir="$MM_TMP/empty" list
[ -z "$(ls -A "$MM_TMP/empty")" ] || mm_fail "list created files in an empty store.dir"
mm_log "list/stats/gc/show/revoke on no store: 66, nothing created"

echo "checking: a store or cache that cannot be created: 73 in all"
touch "$MM_TMP/file"
expect_exit 73 "store.dir" "$GW" -c "$MM_CONF" --set store.dir="$MM_TMP/file/store" --set gateway.listen=127.0.0.1:1
expect_exit 73 "store.dir" "$MI" -c "$MM_CONF" --set store.dir="$MM_TMP/file/store"
expect_exit 73 "fetcher.cache_dir" "$FE" -c "$MM_CONF" --set fetcher.cache_dir="$MM_TMP/file/cache"
mm_log "store or cache not creatable: 73"

# A gateway with its own certificate, logging to a file.
mk_cert() {   # NAME: $MM_TMP/NAME.key and .crt, a fresh P-256 key
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -keyout "$MM_TMP/$1.key" -out "$MM_TMP/$1.crt" 2>/dev/null
}
served_pin() {
  openssl s_client -connect "127.0.0.1:$MM_GATEWAY_PORT" </dev/null 2>/dev/null |
    openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
}
file_pin() { openssl pkey -in "$1" -pubout -outform der | openssl dgst -sha256 -binary | base64; }
mk_cert one
mk_cert two
cp "$MM_TMP/one.crt" "$MM_TMP/gw.crt"
cp "$MM_TMP/one.key" "$MM_TMP/gw.key"
LOG=$MM_TMP/gw-file.log
GWSET=(--set gateway.tls_cert="$MM_TMP/gw.crt" --set gateway.tls_key="$MM_TMP/gw.key"
  --set log.target=file --set log.file="$LOG")
mm_start_program mm-gateway "${GWSET[@]}" serve
GPID=$(cat "$MM_TMP/mm-gateway.pid")
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
[ "$(served_pin)" = "$(file_pin "$MM_TMP/one.key")" ] || mm_fail "the gateway does not serve its certificate"

echo "checking: a second gateway on the same port exits 69 naming the key"
expect_exit 69 "gateway.listen: 127.0.0.1:$MM_GATEWAY_PORT is in use" "$GW" -c "$MM_CONF" "${GWSET[@]}" \
  --set log.target=stderr serve
alive "$GPID" || mm_fail "the first gateway died"
mm_log "second gateway: 69, 'gateway.listen: 127.0.0.1:$MM_GATEWAY_PORT is in use'"

echo "checking: SIGHUP during a download: it completes, the gateway stays, the log is reopened"
head -c 6000000 /dev/urandom >"$MM_TMP/big.bin"
out=$("$GW" -c "$MM_CONF" "${GWSET[@]}" put "$MM_TMP/big.bin" --type video/mp4)
URL=$(awk '/^url:/{print $2}' <<<"$out")
PIN=$(awk '/^pin:/{print $2}' <<<"$out")
curl -sS -k --pinnedpubkey "$PIN" --limit-rate 2M -o "$MM_TMP/got.bin" "$URL" &
CURL=$!
mm_wait_for 10 test -s "$MM_TMP/got.bin" || mm_fail "the download did not start"
mv "$LOG" "$LOG.1"
kill -HUP "$GPID"
mm_wait_for 10 test -s "$LOG" || mm_fail "log.file not reopened after SIGHUP"
grep -q "reloaded configuration" "$LOG" || mm_fail "no reload line in the new log: $(cat "$LOG")"
kill -HUP "$GPID"
wait "$CURL" || mm_fail "the download was cut by SIGHUP"
cmp -s "$MM_TMP/big.bin" "$MM_TMP/got.bin" || mm_fail "the download differs from the media"
alive "$GPID" || mm_fail "mm-gateway died on SIGHUP"
mm_log "download completed across two SIGHUPs; gateway up; moved log file recreated"

echo "checking: a renewed certificate is served after SIGHUP; a broken one is refused and logged"
cp "$MM_TMP/two.crt" "$MM_TMP/gw.crt"
cp "$MM_TMP/two.key" "$MM_TMP/gw.key"
kill -HUP "$GPID"
mm_wait_for 10 bash -c "[ \"\$(grep -c 'the TLS key changed' '$LOG')\" -ge 1 ]" || mm_fail "no TLS reload line: $(cat "$LOG")"
[ "$(served_pin)" = "$(file_pin "$MM_TMP/two.key")" ] || mm_fail "the new certificate is not served after SIGHUP"
cp "$MM_TMP/one.key" "$MM_TMP/gw.key"   # a key that does not match the certificate
kill -HUP "$GPID"
mm_wait_for 10 grep -q "TLS certificate not reloaded" "$LOG" || mm_fail "a broken pair was not reported"
[ "$(served_pin)" = "$(file_pin "$MM_TMP/two.key")" ] || mm_fail "a broken pair replaced the working one"
alive "$GPID" || mm_fail "mm-gateway died on a broken certificate"
mm_log "SIGHUP: new certificate served (openssl s_client), broken pair kept out"

echo "checking: SIGTERM: one line, exit 0"
stop_ok "$GPID" "mm-gateway did not exit 0 on SIGTERM"
[ "$(grep -c 'stopping signal=SIGTERM' "$LOG")" = 1 ] || mm_fail "not one stopping line: $(tail -3 "$LOG")"
mm_log "gateway: SIGTERM logged once, exit 0"

echo "checking: privilege drop: root with gateway.user = nobody"
chown -R nobody "$MM_STORE"
mm_start_program mm-gateway --set gateway.user=nobody serve
GPID=$(cat "$MM_TMP/mm-gateway.pid")
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway as nobody did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
NOBODY=$(id -u nobody)
awk '/^Uid:/{print $2, $3, $4, $5}' "/proc/$GPID/status" | grep -qx "$NOBODY $NOBODY $NOBODY $NOBODY" ||
  mm_fail "gateway uids: $(grep -E '^(Uid|Gid|Groups):' "/proc/$GPID/status")"
grep -q "running as user=nobody" "$MM_TMP/mm-gateway.log" || mm_fail "no 'running as' line"
stop_ok "$GPID" "gateway as nobody: no clean stop"
mm_start_program mm-gateway serve
GPID=$(cat "$MM_TMP/mm-gateway.pid")
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start"
grep -q "running as root: set gateway.user" "$MM_TMP/mm-gateway.log" || mm_fail "no warning as root"
stop_ok "$GPID" "gateway: no clean stop"
mm_log "gateway.user = nobody: all four uids $NOBODY; without it, a warning"

echo "checking: milter: socket mode and group, second instance 69, SIGHUP stays up, SIGTERM one line"
mkdir -p "$MM_TMP/sock"
SOCK=$MM_TMP/sock/milter.sock
MLOG=$MM_TMP/milter-file.log
MSET=(--set milter.socket="unix:$SOCK" --set milter.socket_mode=0640 --set milter.socket_group=mail
  --set milter.proxy_listen= --set log.target=file --set log.file="$MLOG")
mm_start_program mm-milter "${MSET[@]}"
MPID=$(cat "$MM_TMP/mm-milter.pid")
mm_wait_for 20 test -S "$SOCK" || mm_fail "no milter socket: $(tail -5 "$MM_TMP/mm-milter.log")"
[ "$(stat -c '%a %G' "$SOCK")" = "640 mail" ] || mm_fail "milter socket is $(stat -c '%a %G' "$SOCK")"
expect_exit 69 "milter.socket: unix:$SOCK is in use" "$MI" -c "$MM_CONF" "${MSET[@]}" --set log.target=stderr
[ -S "$SOCK" ] && alive "$MPID" || mm_fail "the second milter took the socket over"
mm_start_program mm-milter --set milter.socket= --set milter.proxy_listen="127.0.0.1:$MM_FILTER_PORT"
P2=$(cat "$MM_TMP/mm-milter.pid")
mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "the filter did not start"
expect_exit 69 "milter.proxy_listen: 127.0.0.1:$MM_FILTER_PORT is in use" "$MI" -c "$MM_CONF" \
  --set milter.socket= --set milter.proxy_listen="127.0.0.1:$MM_FILTER_PORT"
stop_ok "$P2" "the filter-only milter: no clean stop"
mv "$MLOG" "$MLOG.1"
kill -HUP "$MPID"
mm_wait_for 10 grep -q "reloaded configuration" "$MLOG" || mm_fail "milter: log not reopened on SIGHUP"
alive "$MPID" || mm_fail "mm-milter stopped on SIGHUP"
stop_ok "$MPID" "mm-milter did not exit 0 on SIGTERM"
[ "$(grep -c 'stopping signal=SIGTERM' "$MLOG")" = 1 ] || mm_fail "milter: not one stopping line"
mm_log "milter: socket 640 group mail, 69 when taken, HUP kept it up, TERM one line and 0"

echo "checking: fetcher: second instance 69, SIGHUP stays up, SIGTERM one line"
FLOG=$MM_TMP/fetcher-file.log
FSET=(--set fetcher.upstream=pop3://127.0.0.1:1 --set log.target=file --set log.file="$FLOG")
mm_start_program mm-fetcher "${FSET[@]}"
FPID=$(cat "$MM_TMP/mm-fetcher.pid")
mm_wait_port "$MM_FETCHER_PORT" 20 || mm_fail "mm-fetcher did not start: $(tail -5 "$MM_TMP/mm-fetcher.log")"
expect_exit 69 "fetcher.listen: 127.0.0.1:$MM_FETCHER_PORT is in use" "$FE" -c "$MM_CONF" "${FSET[@]}" \
  --set log.target=stderr
mv "$FLOG" "$FLOG.1"
kill -HUP "$FPID"
mm_wait_for 10 grep -q "reloaded configuration" "$FLOG" || mm_fail "fetcher: log not reopened on SIGHUP"
alive "$FPID" || mm_fail "mm-fetcher died on SIGHUP"
stop_ok "$FPID" "mm-fetcher did not exit 0 on SIGTERM"
[ "$(grep -c 'stopping signal=SIGTERM' "$FLOG")" = 1 ] || mm_fail "fetcher: not one stopping line"
mm_log "fetcher: 69 when taken, HUP kept it up, TERM one line and 0"

echo "checking: mmsend -t without media as nobody: sent, no store touched"
PUB=$(mktemp -d /tmp/mm-pub.XXXXXX)
chmod 755 "$PUB"
mkdir -m 700 "$MM_TMP/rootonly"
cat >"$PUB/sendmail" <<'S'
#!/bin/sh
cat >"$(dirname "$0")/out/sent.eml"
S
chmod 755 "$PUB/sendmail"
mkdir -m 777 "$PUB/out"
printf '[store]\ndir = %s/rootonly/store\n[mmsend]\nsendmail = %s/sendmail\nspool_dir = %s/out\n' \
  "$MM_TMP" "$PUB" "$PUB" >"$PUB/mm.conf"
chmod 644 "$PUB/mm.conf"
printf 'From: a@example.test\r\nTo: b@example.test\r\nSubject: plain\r\n\r\nno media here\r\n' >"$PUB/msg.eml"
chmod 644 "$PUB/msg.eml"
rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups "$MS" -c "$PUB/mm.conf" -t <"$PUB/msg.eml" 2>"$MM_TMP/err" || rc=$?
[ "$rc" = 0 ] || { rm -rf "$PUB"; mm_fail "mmsend -t as nobody exited $rc: $(cat "$MM_TMP/err")"; }
grep -q "no media here" "$PUB/out/sent.eml" || { rm -rf "$PUB"; mm_fail "mmsend did not submit the mail"; }
[ -z "$(ls -A "$MM_TMP/rootonly")" ] || { rm -rf "$PUB"; mm_fail "mmsend touched the store"; }
rm -rf "$PUB"
mm_log "mmsend -t as nobody, nothing to detach: exit 0, store untouched"

echo "PASS service"
