#!/usr/bin/env bash
# quota.test.sh - the store's quotas (store/quota.h) with the real programs, on a
# 64 MiB tmpfs mounted as store.dir: media mails through Postfix with mm-milter
# and through the before-queue filter until store.max_bytes, milter.sender_quota
# (by SASL login; by envelope sender in the filter) or store.min_free is hit.
# Each time: swaks sees 452 4.3.1, nothing is half-stored (tmp/ empty, every
# active item's object present, every delivered handle's object present),
# another sender's media mail and a plain mail still pass. mmsend over a quota
# exits 75 and leaves nothing in the store.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
MMSEND=$(mm_bin mmsend)
mm_write_conf
mm_small_fs "$MM_STORE" 64m   # unmounted by the EXIT trap
MSG=$MM_TMP/msgs
mkdir -p "$MSG"

# Quota keys for each phase; the rest of the config is mm_write_conf's.
NO_QUOTA=(--set store.max_bytes=0 --set store.min_free=0 --set milter.sender_quota=0)
start_milter() {
  mm_start_program mm-milter "$@"
  mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start: $(tail -5 "$MM_TMP/mm-milter.log")"
  mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter's filter did not start: $(tail -5 "$MM_TMP/mm-milter.log")"
}
# A fresh, empty store and mm-milter with the given --set arguments.
restart_milter() {
  mm_stop_program mm-milter
  local end=$((SECONDS + 10))
  while ! mm__port_is_free "$MM_MILTER_PORT" && [ $SECONDS -lt $end ]; do sleep 0.1; done
  find "$MM_STORE" -mindepth 1 -delete
  start_milter "$@"
}

start_milter "${NO_QUOTA[@]}"
mm_dovecot_start
MM_POSTFIX_EXTRA="smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $MM_DOVECOT_AUTH_SOCKET"
export MM_POSTFIX_EXTRA
MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT \
  mm_postfix_start "inet:127.0.0.1:$MM_MILTER_PORT"
cat >>"$MM_CONF" <<EOF

[mmsend]
smtp = smtp://127.0.0.1:$MM_SMTP_PORT
spool_dir = $MM_TMP
EOF
mm_log "mm-milter (milter + filter) on a 64 MiB tmpfs store, Postfix with SASL, Dovecot up"

# A mail with MIB mebibytes of fake MP4 (random, so never deduplicated): NAME MIB.
media_mail() {
  printf '\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00' >"$MM_TMP/$1.mp4"
  head -c $(($2 * 1048576 - 16)) /dev/urandom >>"$MM_TMP/$1.mp4"
  mm_make_media_mail "$MM_TMP/$1.mp4" "$MSG/$1.eml" video/mp4 "Quota $1"
}
plain_mail() {
  printf 'From: x@example.test\r\nTo: bob@example.test\r\nSubject: Quota %s\r\n\r\nJust text.\r\n' "$1" >"$MSG/$1.eml"
}
# Send message NAME: PORT FROM NAME [swaks args]; prints the last server reply; exit status of swaks.
send() {
  local port=$1 from=$2 name=$3 rc=0
  shift 3
  swaks --server "127.0.0.1:$port" --from "$from" --to bob@example.test --data "@$MSG/$name.eml" "$@" \
    >"$MM_TMP/swaks-$name.out" 2>&1 || rc=$?
  grep -E '^<\*\* +[0-9]{3}|^<- +250 ' "$MM_TMP/swaks-$name.out" | tail -n1
  return $rc
}
expect_pass() {
  local n0 reply
  n0=$(mm_count_messages bob)
  reply=$(send "$@") || mm_fail "$3 was refused: $reply"
  mm_wait_delivered bob $((n0 + 1)) 60 || mm_fail "$3 was not delivered"
}
expect_452() {
  local reply n0
  n0=$(mm_count_messages bob)
  reply=$(send "$@") && mm_fail "$3 was accepted: $reply"
  echo "$reply" | grep -qE '^<\*\* +452 4\.3\.1' || mm_fail "$3: expected 452 4.3.1, swaks saw: $reply"
  sleep 1
  [ "$(mm_count_messages bob)" -eq "$n0" ] || mm_fail "$3 was delivered anyway"
}
# Nothing half-stored: tmp/ empty, no reservation left, every active item's
# object present, and every handle delivered so far names an object that is there.
check_store() {
  local what=$1 left sha
  left=$(find "$MM_STORE/tmp" -type f | wc -l)
  [ "$left" -eq 0 ] || mm_fail "$what: $left files left in tmp/"
  [ "$(sqlite3 "$MM_STORE/index.sqlite" 'SELECT count(*) FROM reservations')" = 0 ] ||
    mm_fail "$what: reservations left in the index"
  for sha in $(sqlite3 "$MM_STORE/index.sqlite" "SELECT sha256 FROM items WHERE state = 'active' AND link_path = ''"); do
    [ -f "$MM_STORE/objects/${sha:0:2}/$sha" ] || mm_fail "$what: item with missing object $sha"
  done
  for sha in $(cat "$MM_MAIL_DIR"/bob/Maildir/new/* 2>/dev/null | tr -d '\r\n\t ' | grep -oE '[^g]sha256=[0-9a-f]{64}' |
    cut -d= -f2 | sort -u); do
    [ "$(sqlite3 "$MM_STORE/index.sqlite" "SELECT count(*) FROM items WHERE sha256 = '$sha'")" = 0 ] ||
      [ -f "$MM_STORE/objects/${sha:0:2}/$sha" ] || mm_fail "$what: a delivered handle names missing object $sha"
  done
}
items() { sqlite3 "$MM_STORE/index.sqlite" "SELECT count(*) FROM items" 2>/dev/null || echo 0; }

for n in a1 a2 a3 b1 b2 b3 c1 c2 d1 d2 d3 e1; do media_mail "$n" 5; done
media_mail small 2
plain_mail plain1
plain_mail plain2
plain_mail plain3

# ---- (a) store.max_bytes through the milter ----------------------------------------
restart_milter "${NO_QUOTA[@]}" --set store.max_bytes=12M
expect_pass "$MM_SMTP_PORT" alice@example.test a1
expect_pass "$MM_SMTP_PORT" alice@example.test a2
expect_452 "$MM_SMTP_PORT" carol@example.test a3
grep -q 'store.max_bytes reached' "$MM_TMP/mm-milter.log" || mm_fail "(a) no log line naming store.max_bytes"
check_store "(a)"
expect_pass "$MM_SMTP_PORT" carol@example.test small   # 10 + 2 MiB still fit
expect_pass "$MM_SMTP_PORT" alice@example.test plain1
[ "$(items)" -eq 3 ] || mm_fail "(a) $(items) items in the store, expected 3"
mm_log "(a) milter, store.max_bytes = 12M: the third 5 MiB mail got 452 4.3.1; a 2 MiB one and a plain mail passed"

# ---- (b) milter.sender_quota by SASL login through the milter ------------------------
restart_milter "${NO_QUOTA[@]}" --set milter.sender_quota=8M
AUTH_ALICE=(--local-interface 127.0.0.2 --auth PLAIN --auth-user alice --auth-password secret)
expect_pass "$MM_SMTP_PORT" alice@example.test b1 "${AUTH_ALICE[@]}"
# Another envelope sender changes nothing: the quota is alice's login's.
expect_452 "$MM_SMTP_PORT" someone@example.test b2 "${AUTH_ALICE[@]}"
check_store "(b)"
expect_pass "$MM_SMTP_PORT" carol@example.test b3 --local-interface 127.0.0.2 --auth PLAIN --auth-user carol \
  --auth-password secret
expect_pass "$MM_SMTP_PORT" alice@example.test plain2 "${AUTH_ALICE[@]}"
[ "$(sqlite3 "$MM_STORE/index.sqlite" "SELECT group_concat(sender, ' ') FROM (SELECT sender FROM items ORDER BY sender)")" = \
  "sasl:alice sasl:carol" ] || mm_fail "(b) senders recorded: $(sqlite3 "$MM_STORE/index.sqlite" 'SELECT sender FROM items')"
mm_log "(b) milter, sender_quota = 8M: alice's (SASL) second 5 MiB mail got 452 4.3.1; carol's and a plain mail passed"

# ---- (c) milter.sender_quota by envelope sender through the filter -------------------
restart_milter "${NO_QUOTA[@]}" --set milter.sender_quota=8M
expect_pass "$MM_SUBMIT_PORT" alice@example.test c1
expect_452 "$MM_SUBMIT_PORT" Alice@Example.TEST c2
check_store "(c)"
expect_pass "$MM_SUBMIT_PORT" carol@example.test d1
expect_pass "$MM_SUBMIT_PORT" alice@example.test plain3
mm_log "(c) filter, sender_quota = 8M: alice's second mail got 452 4.3.1 (case games too); carol's and a plain mail passed"

# ---- (d) store.min_free through the filter --------------------------------------------
# Keep all but 14 MiB free: one 5 MiB mail fits with its spool (about 6.8 MiB,
# also in store.dir) and its media (11.8 MiB); the next one's would need 16.8.
restart_milter "${NO_QUOTA[@]}"
avail=$(($(stat -f -c '%a * %S' "$MM_STORE")))
mm_stop_program mm-milter
start_milter "${NO_QUOTA[@]}" --set "store.min_free=$((avail - 14 * 1048576))"
expect_pass "$MM_SUBMIT_PORT" alice@example.test d2
expect_452 "$MM_SUBMIT_PORT" carol@example.test d3
grep -q 'store.min_free reached' "$MM_TMP/mm-milter.log" || mm_fail "(d) no log line naming store.min_free"
check_store "(d)"
plain_mail plain4
expect_pass "$MM_SUBMIT_PORT" carol@example.test plain4
mm_log "(d) filter, min_free = free - 14M: the second 5 MiB mail got 452 4.3.1; a plain mail passed"

# ---- (e) mmsend over a quota: exit 75, nothing left -------------------------------------
mm_stop_program mm-milter
find "$MM_STORE" -mindepth 1 -delete
start_milter "${NO_QUOTA[@]}"
n_items=$(items)
for mode in compose stdin; do
  rc=0
  if [ $mode = compose ]; then
    "$MMSEND" -c "$MM_CONF" "${NO_QUOTA[@]}" --set store.max_bytes=3M --insecure --from alice@example.test \
      --to bob@example.test --subject "mmsend over" --attach "$MM_TMP/e1.mp4" >"$MM_TMP/out" 2>"$MM_TMP/err" || rc=$?
  else
    # -t: the size is only known while the media is written (the Writer's check).
    "$MMSEND" -c "$MM_CONF" "${NO_QUOTA[@]}" --set milter.sender_quota=3M --insecure -t <"$MSG/e1.eml" \
      >"$MM_TMP/out" 2>"$MM_TMP/err" || rc=$?
  fi
  [ "$rc" -eq 75 ] || mm_fail "(e) mmsend ($mode) over quota exited $rc: $(head -c 400 "$MM_TMP/err")"
  grep -qE 'store.max_bytes|milter.sender_quota' "$MM_TMP/err" || mm_fail "(e) mmsend ($mode) said: $(cat "$MM_TMP/err")"
  [ "$(items)" -eq "$n_items" ] || mm_fail "(e) mmsend ($mode) left an item"
  [ -z "$(find "$MM_STORE/objects" "$MM_STORE/tmp" -type f 2>/dev/null)" ] || mm_fail "(e) mmsend ($mode) left files"
  check_store "(e) $mode"
done
mm_log "(e) mmsend over store.max_bytes (compose) and sender_quota (-t) exits 75: $(head -c 120 "$MM_TMP/err")"

echo "quota: 5 cases passed"
