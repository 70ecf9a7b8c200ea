#!/usr/bin/env bash
# gateway_lifecycle.test.sh - what happens to items after sending, with curl and
# the admin CLI: receipts (POST .../receipt, docs/gateway-api.md) and their
# refusals, after_delivery = delete and archive (shared media kept while needed),
# revocation, the periodic expiry collector, and a restart with items intact.
set -euo pipefail
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_write_conf
GW=$(mm_bin mm-gateway)
ADMIN=("$GW" -c "$MM_CONF" --set gateway.archive_dir="$MM_TMP/archive")
start_gateway() {
  mm_start_program mm-gateway --set gateway.gc_interval=1s --set gateway.archive_dir="$MM_TMP/archive" "$@" serve
  mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
}
start_gateway --set gateway.after_delivery=delete
PIN=$(awk '/pin sha256/{print $3; exit}' "$MM_TMP/mm-gateway.log")
C=(curl -sS --max-time 30 -k --pinnedpubkey "$PIN")
code() { "${C[@]}" -o "$MM_TMP/body" -w '%{http_code}' "$@"; }
receipt() {   # URL RECIPIENT SHA [curl args] -> status
  local url=$1 rcpt=$2 sha=$3
  shift 3
  code -X POST --data-urlencode "recipient=$rcpt" --data-urlencode "sha256=$sha" "$@" "$url/receipt"
}
object() { echo "$MM_STORE/objects/${1:0:2}/$1"; }

head -c 1500000 /dev/urandom >"$MM_TMP/a.bin"
head -c 700000 /dev/urandom >"$MM_TMP/b.bin"
mm_gateway_put "$MM_TMP/a.bin" --type video/mp4 --recipient Bob@Example.test --recipient '<carol@example.test>'
A_URL=$MM_ITEM_URL A_ID=$MM_ITEM_ID A_SHA=$MM_ITEM_SHA A_TOKEN=$MM_ITEM_TOKEN
# Each recipient's own URL: only its receipts count (docs/gateway-api.md).
A_BOB=$(mm_recipient_url bob@example.test) A_CAROL=$(mm_recipient_url carol@example.test)
# The same media in a second mail: stored once, two items.
mm_gateway_put "$MM_TMP/a.bin" --type video/mp4 --recipient dave@example.test
A2_URL=$MM_ITEM_URL A2_ID=$MM_ITEM_ID A2_DAVE=$(mm_recipient_url dave@example.test)
[ "$(find "$MM_STORE/objects" -type f | wc -l)" = 1 ] || mm_fail "identical media stored twice"
mm_log "identical media in two items: one object"

echo "checking: the 404 of a wrong token, for comparison"
WRONG=$(printf '%s' "$A_TOKEN" | tr '0-9a-f' '1-9a-f0')
[ "$(code "${A_URL%/*}/$WRONG")" = 404 ] || mm_fail "wrong token not 404"
cp "$MM_TMP/body" "$MM_TMP/404.body"
same404() { cmp -s "$MM_TMP/body" "$MM_TMP/404.body" || mm_fail "$1: 404 body differs"; }

echo "checking: GET and HEAD are never receipts"
for i in 1 2 3; do "${C[@]}" -o /dev/null "$A_URL"; "${C[@]}" -I -o /dev/null "$A_URL"; done
"${C[@]}" -o /dev/null "$A_URL/receipt"
"${ADMIN[@]}" show "$A_ID" --json | grep -q '"state":"active".*"receipts":0' || mm_fail "downloads counted as receipts"
mm_log "3 GETs, 3 HEADs, a GET of .../receipt: still active, 0 receipts"

echo "checking: malformed receipts -> 400, too large -> 413, before any item lookup"
bad() {   # NAME EXPECTED curl-args...
  local name=$1 want=$2 got
  shift 2
  got=$(code -X POST "$@")
  [ "$got" = "$want" ] || mm_fail "$name: $got, want $want"
}
bad "no body" 400 -H 'Content-Type: application/x-www-form-urlencoded' --data-binary '' "$A_URL/receipt"
bad "wrong type" 400 -H 'Content-Type: text/plain' --data-binary "recipient=bob%40example.test&sha256=$A_SHA" "$A_URL/receipt"
bad "JSON" 400 -H 'Content-Type: application/json' --data-binary "{\"recipient\":\"bob@example.test\"}" "$A_URL/receipt"
bad "no sha256" 400 --data-binary "recipient=bob%40example.test" "$A_URL/receipt"
bad "no recipient" 400 --data-binary "sha256=$A_SHA" "$A_URL/receipt"
bad "short sha256" 400 --data-binary "recipient=bob%40example.test&sha256=${A_SHA:0:63}" "$A_URL/receipt"
bad "non-hex sha256" 400 --data-binary "recipient=bob%40example.test&sha256=${A_SHA:0:63}g" "$A_URL/receipt"
bad "repeated recipient" 400 --data-binary "recipient=a%40x&recipient=bob%40example.test&sha256=$A_SHA" "$A_URL/receipt"
bad "broken escape" 400 --data-binary "recipient=bob%4&sha256=$A_SHA" "$A_URL/receipt"
bad "control character" 400 --data-binary "recipient=bob%0a%40example.test&sha256=$A_SHA" "$A_URL/receipt"
bad "no '='" 400 --data-binary "recipient&sha256=$A_SHA" "$A_URL/receipt"
bad "malformed, unknown item" 400 --data-binary "recipient" "${A_URL%/*/*}/$WRONG/$WRONG/receipt"
head -c 5000 /dev/zero | tr '\0' a >"$MM_TMP/big.form"
bad "5000-byte body" 413 --data-binary "@$MM_TMP/big.form" "$A_URL/receipt"
bad "5000-byte chunked body" 413 -H 'Transfer-Encoding: chunked' --data-binary "@$MM_TMP/big.form" "$A_URL/receipt"
bad "Content-Length 10^9" 413 -H 'Content-Length: 1000000000' --data-binary "x" "$A_URL/receipt"
mm_log "16 malformed or oversized receipt bodies refused with 400/413"

echo "checking: receipts that do not match answer the uniform 404"
# Another digest of the same form: the first hex digit changed (replacing every
# 'a' would leave a digest without one unchanged, 1 run in 60).
if [ "${A_SHA:0:1}" = 0 ]; then BAD_SHA=1${A_SHA:1}; else BAD_SHA=0${A_SHA:1}; fi
[ "$(receipt "${A_URL%/*}/$WRONG" bob@example.test "$A_SHA")" = 404 ] || mm_fail "receipt with wrong token not 404"; same404 "wrong token"
[ "$(receipt "$A_BOB" bob@example.test "$BAD_SHA")" = 404 ] || mm_fail "receipt with wrong sha256 not 404"; same404 "wrong sha256"
[ "$(receipt "$A_URL" bob@example.test "$BAD_SHA")" = 404 ] || mm_fail "item-token receipt with wrong sha256 not 404"; same404 "wrong sha256, item token"
[ "$(receipt "$A_BOB" mallory@example.test "$A_SHA")" = 404 ] || mm_fail "receipt from a non-recipient not 404"; same404 "non-recipient"
[ "$(receipt "$A_BOB" dave@example.test "$A_SHA")" = 404 ] || mm_fail "receipt from another item's recipient not 404"; same404 "other item's recipient"
[ "$(receipt "$A_BOB" carol@example.test "$A_SHA")" = 404 ] || mm_fail "bob's token made carol's receipt"; same404 "another recipient"
# The item token: the same 204 for a recipient and a stranger, nothing counted.
[ "$(receipt "$A_URL" mallory@example.test "$A_SHA")" = 204 ] || mm_fail "item token, non-recipient: not the uniform 204"
[ "$(receipt "$A_URL" bob@example.test "$A_SHA")" = 204 ] || mm_fail "item token, recipient: not the uniform 204"
"${ADMIN[@]}" show "$A_ID" --json | grep -q '"receipts":0' || mm_fail "a refused receipt was recorded"
mm_log "wrong token, wrong sha256, non-recipient, another item's recipient: the same 404, nothing recorded"

echo "checking: receipts -> after_delivery = delete"
[ "$(receipt "$A_BOB" BOB@example.TEST "$A_SHA")" = 204 ] || mm_fail "good receipt not 204"
[ "$(receipt "$A_BOB" bob@example.test "${A_SHA^^}")" = 204 ] || mm_fail "repeated receipt (upper-case hex) not 204"
[ "$(code "$A_URL")" = 200 ] || mm_fail "item gone after the first of two receipts"
"${ADMIN[@]}" show "${A_ID:0:8}" | grep -q 'receipts: 1' || mm_fail "show does not count one receipt"
[ "$(receipt "$A_CAROL" carol@example.test "$A_SHA")" = 204 ] || mm_fail "second receipt not 204"
[ "$(code "$A_URL")" = 404 ] || mm_fail "delivered item still served"; same404 "delivered item"
"${ADMIN[@]}" show "$A_ID" --json | grep -q '"state":"deleted"' || mm_fail "item not marked deleted"
[ -f "$(object "$A_SHA")" ] || mm_fail "shared object removed while another item needs it"
[ "$(code "$A2_URL")" = 200 ] && cmp -s "$MM_TMP/body" "$MM_TMP/a.bin" || mm_fail "the other item lost its media"
mm_log "2 of 2 receipts: item deleted (same 404), shared media kept for the other item"
[ "$(receipt "$A2_DAVE" dave@example.test "$A_SHA")" = 204 ] || mm_fail "receipt for the second item not 204"
[ -f "$(object "$A_SHA")" ] && mm_fail "object kept after its last item was delivered"
[ "$(receipt "$A2_DAVE" dave@example.test "$A_SHA")" = 404 ] || mm_fail "receipt after delete not 404"
mm_log "last item delivered: media file removed; a late receipt gets 404"

echo "checking: revoke"
mm_gateway_put "$MM_TMP/b.bin" --type video/mp4 --recipient bob@example.test
B_URL=$MM_ITEM_URL B_ID=$MM_ITEM_ID B_SHA=$MM_ITEM_SHA B_BOB=$(mm_recipient_url bob@example.test)
[ "$(code "$B_URL")" = 200 ] || mm_fail "new item not served"
"${ADMIN[@]}" revoke "${B_ID:0:10}" >"$MM_TMP/revoke.out" || mm_fail "revoke failed"
[ "$(code "$B_URL")" = 404 ] || mm_fail "revoked item still served"; same404 "revoked"
[ "$(receipt "$B_URL" bob@example.test "$B_SHA")" = 404 ] || mm_fail "receipt for revoked item not 404"
[ "$(receipt "$B_BOB" bob@example.test "$B_SHA")" = 404 ] || mm_fail "recipient's receipt for revoked item not 404"; same404 "revoked, recipient token"
if "${ADMIN[@]}" revoke "$B_ID" >/dev/null; then mm_fail "revoking twice succeeded"; fi
if "${ADMIN[@]}" revoke 0000000 >/dev/null 2>&1; then mm_fail "revoking an unknown id succeeded"; fi
if "${ADMIN[@]}" show ../../etc >/dev/null 2>&1; then mm_fail "show accepted a path"; fi
mm_log "revoked: the same 404 for GET and receipts; revoke again/unknown/path -> error"
for i in $(seq 1 30); do [ -f "$(object "$B_SHA")" ] || break; sleep 0.2; done
[ -f "$(object "$B_SHA")" ] && mm_fail "the collector kept a revoked item's media"
mm_log "the collector removed the revoked item's media"

echo "checking: the periodic collector removes expired items"
head -c 400000 /dev/urandom >"$MM_TMP/e.bin"
mm_gateway_put "$MM_TMP/e.bin" --set gateway.retention=2s --recipient bob@example.test
E_URL=$MM_ITEM_URL E_ID=$MM_ITEM_ID E_SHA=$MM_ITEM_SHA
[ "$(code "$E_URL")" = 200 ] || mm_fail "item with 2 s retention not served at once"
for i in $(seq 1 50); do
  "${ADMIN[@]}" list --json | grep -q "$E_ID" || break
  sleep 0.2
done
"${ADMIN[@]}" list --json | grep -q "$E_ID" && mm_fail "expired item still listed after 10 s"
[ -f "$(object "$E_SHA")" ] && mm_fail "expired item's media still there"
[ "$(code "$E_URL")" = 404 ] || mm_fail "expired item served"; same404 "expired"
grep -q 'gc: 1 expired' "$MM_TMP/mm-gateway.log" || mm_fail "no gc line in the log"
mm_log "expired after 2 s: row and media removed by the server's collector, the same 404"

echo "checking: restart with after_delivery = archive; items intact"
mm_gateway_put "$MM_TMP/b.bin" --type video/mp4 --name b.mp4 --recipient bob@example.test --recipient carol@example.test
R_URL=$MM_ITEM_URL R_ID=$MM_ITEM_ID R_SHA=$MM_ITEM_SHA
R_BOB=$(mm_recipient_url bob@example.test) R_CAROL=$(mm_recipient_url carol@example.test)
[ "$(receipt "$R_BOB" bob@example.test "$R_SHA")" = 204 ] || mm_fail "receipt before restart not 204"
mm_stop_program mm-gateway
start_gateway --set gateway.after_delivery=archive
[ "$(code "$R_URL")" = 200 ] && cmp -s "$MM_TMP/body" "$MM_TMP/b.bin" || mm_fail "item lost across restart"
"${ADMIN[@]}" show "$R_ID" | grep -q 'receipts: 1' || mm_fail "receipt lost across restart"
mm_log "after restart: item served byte for byte, its receipt still recorded"
[ "$(receipt "$R_CAROL" carol@example.test "$R_SHA")" = 204 ] || mm_fail "receipt after restart not 204"
[ -f "$MM_TMP/archive/$R_SHA" ] || mm_fail "not archived"
[ "$(sha256sum <"$MM_TMP/archive/$R_SHA" | cut -d' ' -f1)" = "$R_SHA" ] || mm_fail "archived copy differs"
[ -f "$(object "$R_SHA")" ] && mm_fail "archived media still in the store"
[ "$(code "$R_URL")" = 404 ] || mm_fail "archived item still served"; same404 "archived"
"${ADMIN[@]}" show "$R_ID" --json | grep -q '"state":"archived"' || mm_fail "item not marked archived"
mm_log "2 of 2 receipts: media moved to archive_dir (sha256 intact), item answers 404"

echo "checking: admin CLI output"
"${ADMIN[@]}" list >"$MM_TMP/list.txt"
head -n1 "$MM_TMP/list.txt" | grep -q '^ID  *STATE  *SIZE  *EXPIRES  *RECEIPTS  *SENDER  *MESSAGE-ID  *NAME' || mm_fail "list header: $(head -n1 "$MM_TMP/list.txt")"
grep -q "^$R_ID  archived .* 2/2 .*b.mp4" "$MM_TMP/list.txt" || mm_fail "list row for the archived item"
"${ADMIN[@]}" list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert isinstance(d, list) and all("id" in x for x in d)' ||
  mm_fail "list --json is not a JSON array of items"
"${ADMIN[@]}" stats --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["items_by_state"]["archived"] == 1, d; assert d["archived_files"] == 1, d' ||
  mm_fail "stats --json wrong: $("${ADMIN[@]}" stats --json)"
"${ADMIN[@]}" gc --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert set(d) >= {"expired_items","objects_removed","bytes_freed"}' ||
  mm_fail "gc --json wrong"
"${ADMIN[@]}" show "$R_ID" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert [r["receipt"] is not None for r in d["recipient_status"]] == [True, True], d' ||
  mm_fail "show --json recipient_status wrong"
if "${ADMIN[@]}" list extra >/dev/null 2>&1; then mm_fail "list with an argument succeeded"; fi
mm_log "list table and JSON, stats, gc and show JSON parse; bad arguments refused"

mm_stop_program mm-gateway
echo "PASS: gateway_lifecycle"
