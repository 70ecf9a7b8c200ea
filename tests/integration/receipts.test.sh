#!/usr/bin/env bash
# receipts.test.sh - receipts are no oracle and cannot be forged (docs/gateway-api.md,
# docs/postfix.md): each envelope recipient gets its own copy with its own token.
#  (a) the before-queue filter, To bob and Bcc carol: two different URLs; bob's
#      token cannot make carol's receipt (the same 404 as for an unknown address,
#      carol's state unchanged), guessing addresses with it tells real from fake
#      in nothing; after_delivery = delete waits for both receipts;
#  (b) mm-gateway revoke ID --recipient carol cuts carol only;
#  (c) mmsend to two recipients: two different URLs;
#  (d) the milter path (one message for every recipient, the item token): the
#      uniform answer, 204 for a recipient and a stranger alike, nothing counted;
#  (e) the filter above milter.max_recipient_copies: one shared copy, as (d).
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_mediamail_start_servers
mm_stop_program mm-gateway
mm_start_program mm-gateway --set gateway.after_delivery=delete
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not restart: $(tail -5 "$MM_TMP/mm-gateway.log")"
PIN=$(awk '/pin sha256/{print $3; exit}' "$MM_TMP/mm-gateway.log")
ADMIN=("$(mm_bin mm-gateway)" -c "$MM_CONF")
C=(curl -sS --max-time 30 -k --pinnedpubkey "$PIN")
code() { "${C[@]}" -o "$MM_TMP/body" -w '%{http_code}' "$@"; }
receipt() {   # URL RECIPIENT SHA -> status; the body in $MM_TMP/body
  code -X POST --data-urlencode "recipient=$2" --data-urlencode "sha256=$3" "$1/receipt"
}
object() { echo "$MM_STORE/objects/${1:0:2}/$1"; }
# The mail file in USER's mailbox with SUBJECT.
mail_of() {
  local f
  f=$(grep -l "^Subject: $2" -r "$MM_MAIL_DIR/$1/Maildir/new" | head -n1)
  [ -n "$f" ] || mm_fail "no mail '$2' for $1"
  echo "$f"
}
# The item URL in USER's mail with SUBJECT (the location part, decoded).
url_of() {
  python3 - "$(mail_of "$1" "$2")" <<'PY'
import email, re, sys
from email import policy
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.compat32)
for part in msg.walk():
    if part.is_multipart():
        continue
    text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    m = re.search(r"https://\S+/m/[0-9a-f]{32}/[0-9a-f]{32}", text)
    if m:
        print(m.group(0))
        break
PY
}
# Every 32-hex token in USER's mail with SUBJECT (raw and QP-joined).
tokens_in() {
  sed -e ':a' -e '/=\r\?$/{N;s/=\r\?\n//;ba}' "$(mail_of "$1" "$2")" | grep -oE '[0-9a-f]{32}' | sort -u
}

mm_make_video "$MM_TMP/clip.mp4" 2
SHA=$(sha256sum "$MM_TMP/clip.mp4" | cut -d' ' -f1)
send() {   # PORT SUBJECT: To bob, Bcc carol
  swaks --server "127.0.0.1:$1" --from alice@example.test --to bob@example.test,carol@example.test \
    --header "To: bob@example.test" --header "Subject: $2" --body "two recipients" \
    --attach-type video/mp4 --attach-name clip.mp4 --attach "@$MM_TMP/clip.mp4" >"$MM_TMP/swaks.out" 2>&1 ||
    mm_fail "swaks failed: $(tail -5 "$MM_TMP/swaks.out")"
}

# ---- (a) the filter: one copy per recipient --------------------------------------
send "$MM_SUBMIT_PORT" "Per recipient"
mm_wait_delivered bob 1 60 || mm_fail "bob's copy not delivered"
mm_wait_delivered carol 1 60 || mm_fail "carol's copy not delivered"
B_URL=$(url_of bob "Per recipient")
K_URL=$(url_of carol "Per recipient")
[[ "$B_URL" =~ /m/([0-9a-f]{32})/([0-9a-f]{32})$ ]] || mm_fail "bob's mail has no item URL: $B_URL"
ID=${BASH_REMATCH[1]} B_TOKEN=${BASH_REMATCH[2]}
[[ "$K_URL" =~ /m/$ID/([0-9a-f]{32})$ ]] || mm_fail "carol's URL is not for the same item: $K_URL"
K_TOKEN=${BASH_REMATCH[1]}
[ "$B_TOKEN" != "$K_TOKEN" ] || mm_fail "bob and carol got the same token"
tokens_in bob "Per recipient" | grep -q "$K_TOKEN" && mm_fail "carol's token is in bob's mail"
tokens_in carol "Per recipient" | grep -q "$B_TOKEN" && mm_fail "bob's token is in carol's mail"
grep -qi "^To:.*carol" "$(mail_of bob "Per recipient")" &&
  mm_fail "carol (Bcc) named in bob's copy"
grep -q "one copy per recipient" "$MM_TMP/mm-milter.log" || mm_fail "the filter did not log the split"
[ "$(code "$B_URL")" = 200 ] && cmp -s "$MM_TMP/body" "$MM_TMP/clip.mp4" || mm_fail "bob's URL does not serve the video"
[ "$(code "$K_URL")" = 200 ] && cmp -s "$MM_TMP/body" "$MM_TMP/clip.mp4" || mm_fail "carol's URL does not serve the video"
mm_log "(a) To bob, Bcc carol through the filter: two copies, two URLs for one item, each serves the video"

[ "$(code "${B_URL%/*}/$(printf '%s' "$B_TOKEN" | tr '0-9a-f' '1-9a-f0')")" = 404 ] || mm_fail "wrong token not 404"
cp "$MM_TMP/body" "$MM_TMP/404.body"
same404() { cmp -s "$MM_TMP/body" "$MM_TMP/404.body" || mm_fail "$1: body differs from the 404"; }
[ "$(receipt "$B_URL" carol@example.test "$SHA")" = 404 ] || mm_fail "bob's token made carol's receipt"
same404 "carol's receipt with bob's token"
"${ADMIN[@]}" show "$ID" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["receipts"] == 0 and all(r["receipt"] is None for r in d["recipient_status"]), d' ||
  mm_fail "a forged receipt changed the item's receipts"
mm_log "(a) bob's token cannot confirm for carol: the same 404 as an unknown item, nothing recorded"

for guess in carol@example.test mallory@example.test CAROL@example.test nobody@example.net; do
  [ "$(receipt "$B_URL" "$guess" "$SHA")" = 404 ] || mm_fail "guess $guess with bob's token: not 404"
  same404 "guess $guess"
done
mm_log "(a) guessing with bob's token: real (carol) and made-up addresses get the identical 404"

[ "$(receipt "$B_URL" bob@example.test "$SHA")" = 204 ] || mm_fail "bob's own receipt not 204"
[ "$(code "$K_URL")" = 200 ] || mm_fail "the item went after bob's receipt alone (after_delivery = delete)"
[ -f "$(object "$SHA")" ] || mm_fail "the media went after one of two receipts"
[ "$(receipt "$K_URL" carol@example.test "$SHA")" = 204 ] || mm_fail "carol's own receipt not 204"
[ "$(code "$K_URL")" = 404 ] || mm_fail "delivered item still served"
"${ADMIN[@]}" show "$ID" --json | grep -q '"state":"deleted"' || mm_fail "item not deleted after both receipts"
mm_log "(a) after_delivery = delete: the media stays after bob's receipt, goes after carol's"

# ---- (b) revoke one recipient ------------------------------------------------------
send "$MM_SUBMIT_PORT" "Revoke one"
mm_wait_delivered bob 2 60 || mm_fail "bob's second copy not delivered"
mm_wait_delivered carol 2 60 || mm_fail "carol's second copy not delivered"
B2=$(url_of bob "Revoke one")
K2=$(url_of carol "Revoke one")
[[ "$B2" =~ /m/([0-9a-f]{32})/ ]] || mm_fail "no URL in the second mail"
ID2=${BASH_REMATCH[1]}
"${ADMIN[@]}" revoke "${ID2:0:8}" --recipient Carol@Example.test >"$MM_TMP/revoke.out" || mm_fail "revoke --recipient failed"
[ "$(code "$K2")" = 404 ] || mm_fail "carol's revoked URL still served"; same404 "revoked recipient"
[ "$(receipt "$K2" carol@example.test "$SHA")" = 404 ] || mm_fail "receipt with carol's revoked token not 404"
[ "$(code "$B2")" = 200 ] || mm_fail "bob's URL cut with carol's"
"${ADMIN[@]}" show "$ID2" --json | grep -q '"address":"carol@example.test","receipt":null,"revoked":true' ||
  mm_fail "show does not mark carol revoked: $("${ADMIN[@]}" show "$ID2" --json)"
if "${ADMIN[@]}" revoke "$ID2" --recipient mallory@example.test >/dev/null 2>&1; then
  mm_fail "revoking a non-recipient succeeded"
fi
mm_log "(b) revoke ID --recipient carol: carol's URL answers 404, bob's still serves"

# ---- (c) mmsend: one copy per recipient --------------------------------------------
MAIL_CONFIG=$MM_POSTFIX_DIR "$(mm_bin mmsend)" -c "$MM_CONF" --set mmsend.smtp=sendmail --from alice@example.test \
  --to bob@example.test --bcc carol@example.test --subject "Via mmsend" --attach "$MM_TMP/clip.mp4" 2>"$MM_TMP/err" ||
  mm_fail "mmsend failed: $(cat "$MM_TMP/err")"
mm_wait_delivered bob 3 60 || mm_fail "mmsend's copy for bob not delivered"
mm_wait_delivered carol 3 60 || mm_fail "mmsend's copy for carol not delivered"
MB=$(url_of bob "Via mmsend")
MK=$(url_of carol "Via mmsend")
[ -n "$MB" ] && [ -n "$MK" ] && [ "$MB" != "$MK" ] || mm_fail "mmsend: bob and carol got the same URL ($MB)"
[ "${MB%/*}" = "${MK%/*}" ] || mm_fail "mmsend: the two URLs are not for one item"
[ "$(receipt "$MB" carol@example.test "$SHA")" = 404 ] || mm_fail "mmsend: bob's token made carol's receipt"
[ "$(receipt "$MK" carol@example.test "$SHA")" = 204 ] || mm_fail "mmsend: carol's own receipt not 204"
mm_log "(c) mmsend to bob and Bcc carol: two URLs; only carol's makes carol's receipt"

# ---- (d) the milter path: the shared token's uniform answer ------------------------
send "$MM_SMTP_PORT" "Via milter"
mm_wait_delivered bob 4 60 || mm_fail "the milter's mail for bob not delivered"
mm_wait_delivered carol 4 60 || mm_fail "the milter's mail for carol not delivered"
UB=$(url_of bob "Via milter")
UK=$(url_of carol "Via milter")
[ -n "$UB" ] && [ "$UB" = "$UK" ] || mm_fail "the milter path should give one shared URL ($UB vs $UK)"
[[ "$UB" =~ /m/([0-9a-f]{32})/ ]] || mm_fail "no URL in the milter's mail"
UID_=${BASH_REMATCH[1]}
for who in bob@example.test carol@example.test mallory@example.test nobody@example.net; do
  [ "$(receipt "$UB" "$who" "$SHA")" = 204 ] || mm_fail "shared token, $who: not the uniform 204"
done
"${ADMIN[@]}" show "$UID_" --json | grep -q '"state":"active".*"receipts":0' || mm_fail "shared-token receipts were counted"
[ "$(code "$UB")" = 200 ] || mm_fail "shared-token receipts ended the item"
mm_log "(d) milter path: 204 for recipients and strangers alike, nothing counted, the item stays"

# ---- (e) the filter over milter.max_recipient_copies: one shared copy --------------
mm_stop_program mm-milter
end=$((SECONDS + 10))
while ! mm__port_is_free "$MM_FILTER_PORT" && [ $SECONDS -lt $end ]; do sleep 0.1; done
mm_start_program mm-milter --set milter.max_recipient_copies=1
mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not restart: $(tail -5 "$MM_TMP/mm-milter.log")"
mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter's filter did not restart: $(tail -5 "$MM_TMP/mm-milter.log")"
send "$MM_SUBMIT_PORT" "Over the bound"
mm_wait_delivered bob 5 60 || mm_fail "bob's copy over the bound not delivered"
mm_wait_delivered carol 5 60 || mm_fail "carol's copy over the bound not delivered"
OB=$(url_of bob "Over the bound")
OK_=$(url_of carol "Over the bound")
[ -n "$OB" ] && [ "$OB" = "$OK_" ] || mm_fail "over max_recipient_copies: not one shared URL ($OB vs $OK_)"
grep -q "2 recipients, over milter.max_recipient_copies" "$MM_TMP/mm-milter.log" ||
  mm_fail "the filter did not log why it sent one shared copy"
for who in bob@example.test carol@example.test mallory@example.test; do
  [ "$(receipt "$OB" "$who" "$SHA")" = 204 ] || mm_fail "over the bound, $who: not the uniform 204"
done
[ "$(code "$OB")" = 200 ] || mm_fail "shared-token receipts over the bound ended the item"
mm_log "(e) 2 recipients over milter.max_recipient_copies = 1: one shared URL, the uniform 204, the item stays"

echo "PASS: receipts"
