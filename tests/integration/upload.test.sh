#!/usr/bin/env bash
# upload.test.sh - mmsend --gateway on a "laptop" (no store directory at all)
# uploading a real video to mm-gateway's upload API, through the private
# Postfix and Dovecot, read back byte-identical through mm-fetcher with the
# recipient's own token (receipt counted). The upload is cut by kill -9 of the
# gateway mid-transfer; a second run of the same command resumes: the bytes
# sent in all stay within the file plus one chunk. mmsend -t with mmsend.gateway
# set. Then the API's refusals, each leaving no item: wrong and revoked tokens,
# an over-quota user, more bytes than declared, a lying Content-Range, an
# unknown upload id, another user's upload, a hash mismatch, too many open.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
MMSEND=$(mm_bin mmsend)
GATEWAY=$(mm_bin mm-gateway)
mm_write_conf
# alice may hold 40 MiB (milter.sender_quota counts per user for uploads);
# four open uploads per user.
sed -i 's/^\[milter\]$/[milter]\nsender_quota = 40M/' "$MM_CONF"
sed -i "s|^dir = $MM_STORE\$|dir = $MM_STORE\nmin_free = 0|" "$MM_CONF"
# A sender slower than 4 KB/s over 2 s is cut (as a slow reader is).
sed -i 's/^\[gateway\]$/[gateway]\nupload_max_open = 4\nmin_rate_window = 2s/' "$MM_CONF"
ADMIN_PORT=$(mm_free_port) || mm_fail "no free port for gateway.admin_listen"
sed -i "s/^\\[gateway\\]\$/[gateway]\\nadmin_listen = 127.0.0.1:$ADMIN_PORT/" "$MM_CONF"
mkdir -p "$MM_STORE"
start_gateway() {
  mm_start_program mm-gateway
  mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
}
start_gateway
mm_postfix_start ""
mm_dovecot_start
mm_fetcher_start
PIN=$(grep -o 'pin sha256//[A-Za-z0-9+/=]*' "$MM_TMP/mm-gateway.log" | head -1 | cut -d' ' -f2)
[ -n "$PIN" ] || mm_fail "mm-gateway printed no pin"
BASE=https://127.0.0.1:$MM_GATEWAY_PORT
mm_log "gateway, Postfix, Dovecot and fetcher up"

# Upload tokens: made by the admin command, printed once, kept hashed.
"$GATEWAY" -c "$MM_CONF" token add alice >"$MM_TMP/alice.token"
"$GATEWAY" -c "$MM_CONF" token add bob >"$MM_TMP/bob.token"
"$GATEWAY" -c "$MM_CONF" token add mallory >"$MM_TMP/mallory.token"
"$GATEWAY" -c "$MM_CONF" token revoke mallory >/dev/null || mm_fail "token revoke failed"
[ "$("$GATEWAY" -c "$MM_CONF" token list | cut -f1 | tr '\n' ' ')" = "alice bob " ] ||
  mm_fail "token list: $("$GATEWAY" -c "$MM_CONF" token list)"
grep -q "$(cat "$MM_TMP/alice.token")" "$MM_STORE/index.sqlite" && mm_fail "a token is stored in clear"
mm_log "token add / list / revoke; the index holds only hashes"

items() { sqlite3 "$MM_STORE/index.sqlite" "SELECT count(*) FROM items"; }
uploads() { sqlite3 "$MM_STORE/index.sqlite" "SELECT count(*) FROM uploads"; }

# The laptop: mmsend's own config, and no store directory.
LAPTOP=$MM_TMP/laptop.conf
cat >"$LAPTOP" <<CONF
[store]
dir = $MM_TMP/laptop-has-no-store

[mmsend]
smtp = sendmail
spool_dir = $MM_TMP
gateway = $BASE
gateway_token_file = $MM_TMP/alice.token
gateway_pin = $PIN
gateway_chunk = 1M
gateway_retries = 1
gateway_max_rate = 2M

[log]
level = info
CONF

mm_make_video "$MM_TMP/clip.mp4" 6
size=$(stat -c %s "$MM_TMP/clip.mp4")
send_clip() {
  MAIL_CONFIG=$MM_POSTFIX_DIR "$MMSEND" -c "$LAPTOP" --from alice@example.test --to bob@example.test \
    --subject "From the laptop" --attach "$MM_TMP/clip.mp4" --title "A clip" -q
}

# ---- 1. cut mid-upload, then resumed by a second run -----------------------------
rc=0
send_clip 2>"$MM_TMP/run1.err" &
send_pid=$!
part=""
for _ in $(seq 1 300); do
  part=$(ls "$MM_STORE/uploads/" 2>/dev/null | head -1)
  if [ -n "$part" ] && [ "$(stat -c %s "$MM_STORE/uploads/$part" 2>/dev/null || echo 0)" -ge 2097152 ]; then
    break
  fi
  sleep 0.05
done
[ -n "$part" ] || mm_fail "no upload started: $(cat "$MM_TMP/run1.err")"
kill -9 "$(cat "$MM_TMP/mm-gateway.pid")"
wait "$send_pid" || rc=$?
[ "$rc" -eq 75 ] || mm_fail "mmsend after the gateway died exited $rc, expected 75: $(cat "$MM_TMP/run1.err")"
grep -q "run the same command again to resume" "$MM_TMP/run1.err" || mm_fail "no resume hint: $(cat "$MM_TMP/run1.err")"
sent1=$(grep -o '([0-9]* bytes sent in this run)' "$MM_TMP/run1.err" | grep -o '[0-9]*')
on_disk=$(stat -c %s "$MM_STORE/uploads/$part")
[ "$on_disk" -gt 0 ] && [ "$on_disk" -lt "$size" ] || mm_fail "the cut upload holds $on_disk of $size bytes"
[ "$(items)" -eq 0 ] || mm_fail "an item exists after a cut upload"
mm_log "gateway killed (-9) with $on_disk of $size bytes on disk: mmsend exit 75 after its retries, no item"

start_gateway
send_clip 2>"$MM_TMP/run2.err" || mm_fail "the second run failed: $(cat "$MM_TMP/run2.err")"
grep -q "resuming the upload at byte $on_disk " "$MM_TMP/run2.err" ||
  mm_fail "the second run did not resume at $on_disk: $(cat "$MM_TMP/run2.err")"
sent2=$(grep -o 'bytes_sent=[0-9]*' "$MM_TMP/run2.err" | cut -d= -f2)
total=$((sent1 + sent2))
[ "$total" -le $((size + 1048576)) ] || mm_fail "sent $sent1 + $sent2 = $total bytes for a $size-byte file"
[ ! -e "$MM_TMP/laptop-has-no-store" ] || mm_fail "mmsend made a local store"
[ "$(items)" -eq 1 ] && [ "$(uploads)" -eq 0 ] || mm_fail "expected one item and no open upload"
mm_log "second run resumed at byte $on_disk: $sent1 + $sent2 = $total bytes sent for $size (limit: + 1 MiB chunk)"

mm_wait_delivered bob 1 60 || mm_fail "the laptop's mail was not delivered"
check_received() {
  local user=$1 subject=$2 name=$3 file=$4 got="" try
  for try in $(seq 1 30); do
    mm_fetchmail_via_fetcher "$user" "$MM_TMP/fetched-$user"
    got=$(mm_find_by_subject "$MM_TMP/fetched-$user" "$subject" || true)
    [ -z "$got" ] || break
    sleep 1
  done
  [ -n "$got" ] || mm_fail "$user did not get '$subject' through the fetcher: $(tail -5 "$MM_TMP/mm-fetcher.log")"
  mm_extract_attachment "$got" "$name" "$MM_TMP/received.bin"
  cmp -s "$file" "$MM_TMP/received.bin" || mm_fail "$name for $user is not byte-identical"
}
check_received bob "From the laptop" clip.mp4 "$MM_TMP/clip.mp4"
mm_wait_for 20 grep -q 'receipt accepted.*recipient=bob@example.test' "$MM_TMP/mm-gateway.log" ||
  mm_fail "no receipt with bob's own token: $(grep receipt "$MM_TMP/mm-gateway.log" | tail -3)"
mm_log "bob read the video byte-identical through mm-fetcher; his own token's receipt counted"

# ---- 2. mmsend -t (sendmail mode) with mmsend.gateway set -------------------------
{ cat "$MM_TMP/clip.mp4"; printf -- '-t'; } >"$MM_TMP/clip-t.mp4"
python3 - "$MM_TMP/clip-t.mp4" >"$MM_TMP/t.eml" <<'PY'
import sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "alice@example.test"
m["To"] = "carol@example.test"
m["Subject"] = "Sendmail mode upload"
m.set_content("see the clip")
m.add_attachment(open(sys.argv[1], "rb").read(), maintype="video", subtype="mp4", filename="clip-t.mp4")
sys.stdout.write(m.as_string())
PY
MAIL_CONFIG=$MM_POSTFIX_DIR "$MMSEND" -c "$LAPTOP" --set mmsend.gateway_max_rate=0 -t -q <"$MM_TMP/t.eml" \
  2>"$MM_TMP/t.err" || mm_fail "mmsend -t failed: $(cat "$MM_TMP/t.err")"
mm_wait_delivered carol 1 60 || mm_fail "the -t mail was not delivered"
check_received carol "Sendmail mode upload" clip-t.mp4 "$MM_TMP/clip-t.mp4"
[ ! -e "$MM_TMP/laptop-has-no-store" ] || mm_fail "mmsend -t made a local store"
mm_log "mmsend -t with mmsend.gateway: uploaded from the message, carol's copy byte-identical"

# ---- 3. refusals: each clear, none leaves an item --------------------------------
before=$(items)
TOKEN=$(cat "$MM_TMP/alice.token")
api() {   # METHOD PATH [curl args...]: prints the status; headers in $MM_TMP/h, body in $MM_TMP/b
  local method=$1 path=$2
  shift 2
  curl -sk -o "$MM_TMP/b" -D "$MM_TMP/h" -w '%{http_code}' -X "$method" "$@" "$BASE$path" || true
}
md() { printf 'filename %s,filetype %s' "$(printf x.mp4 | base64 -w0)" "$(printf video/mp4 | base64 -w0)"; }

st=$(api POST /upload -H "Authorization: Bearer $(head -c 32 /dev/urandom | sha256sum | cut -c1-64)" \
  -H "Upload-Length: 10")
[ "$st" = 401 ] || mm_fail "a wrong token got $st"
st=$(api POST /upload -H "Authorization: Bearer $(cat "$MM_TMP/mallory.token")" -H "Upload-Length: 10")
[ "$st" = 401 ] || mm_fail "a revoked token got $st"
rc=0
MAIL_CONFIG=$MM_POSTFIX_DIR "$MMSEND" -c "$LAPTOP" --set "mmsend.gateway_token_file=$MM_TMP/mallory.token" \
  --from alice@example.test --to bob@example.test --subject x --attach "$MM_TMP/clip.mp4" -q 2>"$MM_TMP/err" || rc=$?
[ "$rc" -eq 77 ] && grep -q "refused the upload token (401)" "$MM_TMP/err" ||
  mm_fail "mmsend with a revoked token: exit $rc, $(cat "$MM_TMP/err")"
mm_log "wrong and revoked tokens: 401 (mmsend: exit 77, says so)"

mm_random_mp4 "$MM_TMP/big.mp4" $((41 * 1048576))
rc=0
MAIL_CONFIG=$MM_POSTFIX_DIR "$MMSEND" -c "$LAPTOP" --set mmsend.gateway_max_rate=0 --from alice@example.test \
  --to bob@example.test --subject big --attach "$MM_TMP/big.mp4" -q 2>"$MM_TMP/err" || rc=$?
[ "$rc" -eq 75 ] && grep -q "over quota" "$MM_TMP/err" || mm_fail "over quota: exit $rc, $(cat "$MM_TMP/err")"
[ "$(uploads)" -eq 0 ] || mm_fail "an over-quota upload was opened"
mm_log "over alice's quota (milter.sender_quota 40M): 413 at the POST, mmsend exit 75 'over quota'"

new_upload() {   # LENGTH [TOKEN] [more metadata]: sets LOC
  local st
  st=$(api POST /upload -H "Authorization: Bearer ${2:-$TOKEN}" -H "Upload-Length: $1" -H "Upload-Metadata: $(md)${3:-}")
  [ "$st" = 201 ] || mm_fail "POST /upload got $st: $(cat "$MM_TMP/b")"
  LOC=$(tr -d '\r' <"$MM_TMP/h" | awk 'tolower($1)=="location:"{print $2}')
}
head -c 2000 /dev/urandom >"$MM_TMP/2000.bin"
head -c 50 "$MM_TMP/2000.bin" >"$MM_TMP/50.bin"
new_upload 1000
st=$(api PATCH "$LOC" -H "Authorization: Bearer $TOKEN" -H "Upload-Offset: 0" \
  -H "Content-Type: application/offset+octet-stream" --data-binary @"$MM_TMP/2000.bin")
[ "$st" = 413 ] || mm_fail "2000 bytes into a 1000-byte upload got $st"
st=$(api PUT "$LOC" -H "Authorization: Bearer $TOKEN" -H "Content-Range: bytes 0-99/1000" --data-binary @"$MM_TMP/50.bin")
[ "$st" = 400 ] || mm_fail "a Content-Range longer than the body got $st"
st=$(api PUT "$LOC" -H "Authorization: Bearer $TOKEN" -H "Content-Range: bytes 0-49/5000" --data-binary @"$MM_TMP/50.bin")
[ "$st" = 400 ] || mm_fail "a Content-Range with another total got $st"
st=$(api PUT "$LOC" -H "Authorization: Bearer $TOKEN" -H "Content-Range: bytes 10-59/1000" --data-binary @"$MM_TMP/50.bin")
[ "$st" = 409 ] || mm_fail "a PUT at the wrong offset got $st"
st=$(api HEAD "$LOC" -H "Authorization: Bearer $TOKEN" -I)
grep -qi '^upload-offset: 0' "$MM_TMP/h" || mm_fail "refused bytes were kept: $(cat "$MM_TMP/h")"
mm_log "more bytes than declared: 413; lying Content-Range: 400; wrong offset: 409; offset still 0"

st=$(api HEAD /upload/0123456789abcdef0123456789abcdef -H "Authorization: Bearer $TOKEN" -I)
[ "$st" = 404 ] || mm_fail "an unknown upload id got $st"
BOB=$(cat "$MM_TMP/bob.token")
st=$(api HEAD "$LOC" -H "Authorization: Bearer $BOB" -I)
[ "$st" = 404 ] || mm_fail "bob's HEAD on alice's upload got $st"
st=$(api PATCH "$LOC" -H "Authorization: Bearer $BOB" -H "Upload-Offset: 0" \
  -H "Content-Type: application/offset+octet-stream" --data-binary @"$MM_TMP/50.bin")
[ "$st" = 404 ] || mm_fail "bob's PATCH on alice's upload got $st"
st=$(api DELETE "$LOC" -H "Authorization: Bearer $BOB")
[ "$st" = 404 ] || mm_fail "bob's DELETE of alice's upload got $st"
mm_log "unknown upload id and another user's upload: 404 alike"

# A declared hash the bytes do not have: 460, and neither item nor upload stays.
LOC1=$LOC
new_upload 2000 "$TOKEN" ",sha256 $(printf '%064d' 0 | base64 -w0)"
st=$(api PATCH "$LOC" -H "Authorization: Bearer $TOKEN" -H "Upload-Offset: 0" \
  -H "Content-Type: application/offset+octet-stream" --data-binary @"$MM_TMP/2000.bin")
[ "$st" = 460 ] || mm_fail "bytes that are not the declared sha256 got $st"
st=$(api HEAD "$LOC" -H "Authorization: Bearer $TOKEN" -I)
[ "$st" = 404 ] || mm_fail "the mismatched upload still answers $st"
mm_log "declared sha256 not matched: 460, the upload removed"

# /metrics counts since the restart: the resumed video (at least its rest)
# and the 460 above.
curl -sS "http://127.0.0.1:$ADMIN_PORT/metrics" >"$MM_TMP/metrics" || mm_fail "no /metrics"
grep -qx 'mm_gateway_uploads_total{result="checksum_mismatch"} 1' "$MM_TMP/metrics" ||
  mm_fail "the 460 is not counted: $(grep uploads_total "$MM_TMP/metrics")"
grep -Eqx 'mm_gateway_uploads_total\{result="complete"\} [1-9][0-9]*' "$MM_TMP/metrics" ||
  mm_fail "no complete upload counted: $(grep uploads_total "$MM_TMP/metrics")"
up_bytes=$(awk '$1 == "mm_gateway_upload_bytes_total" { print $2 }' "$MM_TMP/metrics")
[ "${up_bytes:-0}" -ge $((size - on_disk + 2000)) ] ||
  mm_fail "mm_gateway_upload_bytes_total is ${up_bytes:-none}, expected at least $((size - on_disk + 2000))"
mm_log "/metrics: uploads complete and checksum_mismatch counted, $up_bytes bytes written into uploads"

# upload_max_open = 4: one is open (the 1000-byte one); three more, then 429.
for _ in 1 2 3; do new_upload 10; done
st=$(api POST /upload -H "Authorization: Bearer $TOKEN" -H "Upload-Length: 10")
[ "$st" = 429 ] || mm_fail "a fifth open upload got $st"
st=$(api DELETE "$LOC1" -H "Authorization: Bearer $TOKEN")
[ "$st" = 204 ] || mm_fail "DELETE of an open upload got $st"
[ "$(uploads)" -eq 3 ] || mm_fail "expected 3 open uploads after the DELETE, found $(uploads)"
mm_log "gateway.upload_max_open: the fifth open upload 429; DELETE frees one"

# A sender trickling its body holds no worker for long: cut by gateway.min_rate,
# and what it sent stays for a resume.
head -c 1000000 /dev/urandom >"$MM_TMP/1m.bin"
new_upload 1000000
start=$SECONDS
st=$(timeout 30 curl -sk -o /dev/null -w '%{http_code}' --limit-rate 1000 -X PATCH -H "Authorization: Bearer $TOKEN" \
  -H "Upload-Offset: 0" -H "Content-Type: application/offset+octet-stream" --data-binary @"$MM_TMP/1m.bin" \
  "$BASE$LOC" || true)
[ $((SECONDS - start)) -lt 20 ] || mm_fail "a 1 KB/s upload was not cut in time"
mm_wait_for 5 grep -q "PATCH aborted .*id=${LOC#/upload/}" "$MM_TMP/mm-gateway.log" ||
  mm_fail "no aborted PATCH logged for the slow sender (curl: $st)"
api HEAD "$LOC" -H "Authorization: Bearer $TOKEN" -I >/dev/null
off=$(tr -d '\r' <"$MM_TMP/h" | awk 'tolower($1)=="upload-offset:"{print $2}')
[ -n "$off" ] && [ "$off" -lt 1000000 ] || mm_fail "the slow upload's offset is '$off'"
mm_log "a 1 KB/s sender cut by gateway.min_rate after $((SECONDS - start)) s; its $off bytes kept for a resume"

# A sender above gateway.min_rate is never cut, though the gateway reads its
# body in large turns (SO_RCVLOWAT): bytes waiting in the socket count.
st=$(api DELETE "$LOC" -H "Authorization: Bearer $TOKEN")
head -c 200000 /dev/urandom >"$MM_TMP/200k.bin"
new_upload 200000
st=$(timeout 30 curl -sk -o /dev/null -w '%{http_code}' --limit-rate 50000 -X PATCH -H "Authorization: Bearer $TOKEN" \
  -H "Upload-Offset: 0" -H "Content-Type: application/offset+octet-stream" --data-binary @"$MM_TMP/200k.bin" \
  "$BASE$LOC" || true)
[ "$st" = 200 ] || mm_fail "a 50 KB/s upload got '$st' (cut?)"
mm_log "a 50 KB/s sender (above gateway.min_rate) completes"

[ "$(items)" -eq $((before + 1)) ] || mm_fail "a refused upload left an item ($(items), expected $((before + 1)))"
mm_log "no refused upload left an item"

# ---- 4. a mail that cannot be sent takes its uploads back ----------------------
# The upload completes, the submission fails (nothing listens on the SMTP
# port): mmsend deletes the item it made, with its upload token.
before=$(items)
DEAD_PORT=$(mm_free_port) || mm_fail "no free port"
rc=0
"$MMSEND" -c "$LAPTOP" --set "mmsend.smtp=smtp://127.0.0.1:$DEAD_PORT" --set mmsend.gateway_max_rate=0 \
  --from alice@example.test --to bob@example.test --subject "never sent" --attach "$MM_TMP/clip.mp4" \
  2>"$MM_TMP/err" || rc=$?
[ "$rc" -ne 0 ] || mm_fail "mmsend succeeded without an SMTP server"
grep -q "the mail was not sent: uploaded item [0-9a-f]* deleted from the gateway" "$MM_TMP/err" ||
  mm_fail "mmsend did not delete its upload: $(cat "$MM_TMP/err")"
[ "$(items)" -eq "$before" ] || mm_fail "the unsent mail's item stayed ($(items) items, expected $before)"
mm_wait_for 5 grep -q "uploaded item deleted by its uploader.*user=alice" "$MM_TMP/mm-gateway.log" ||
  mm_fail "the gateway logged no deletion"
mm_log "SMTP down after the upload: mmsend exit $rc, its item deleted on the gateway"

# The same call by others: only the uploader's own token deletes.
ITEM=$(sqlite3 "$MM_STORE/index.sqlite" "SELECT id FROM items WHERE sender = 'sasl:alice' LIMIT 1")
[ -n "$ITEM" ] || mm_fail "no item of alice's left to try"
st=$(api DELETE "/upload/item/$ITEM")
[ "$st" = 401 ] || mm_fail "a DELETE of an item without a token got $st"
st=$(api DELETE "/upload/item/$ITEM" -H "Authorization: Bearer $BOB")
[ "$st" = 404 ] || mm_fail "bob's DELETE of alice's item got $st"
st=$(api DELETE "/upload/item/0123456789abcdef0123456789abcdef" -H "Authorization: Bearer $TOKEN")
[ "$st" = 404 ] || mm_fail "a DELETE of an unknown item got $st"
st=$(api GET "/upload/item/$ITEM" -H "Authorization: Bearer $TOKEN")
[ "$st" = 405 ] || mm_fail "a GET of /upload/item got $st"
[ "$(sqlite3 "$MM_STORE/index.sqlite" "SELECT count(*) FROM items WHERE id = '$ITEM'")" -eq 1 ] ||
  mm_fail "a refused DELETE removed alice's item"
mm_log "DELETE /upload/item/ID: without a token 401, by another user or of no item 404 alike, GET 405"
