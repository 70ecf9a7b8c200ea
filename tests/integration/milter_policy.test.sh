#!/usr/bin/env bash
# milter_policy.test.sh - mm-milter in a real Postfix configured with exactly the
# main.cf lines of docs/postfix.md: whose mail is rewritten (trusted network,
# SMTP AUTH through Dovecot SASL, foreign client), nested and multiple media,
# signed / inline-PGP / DKIM-signed mail untouched, milter.max_size pass vs
# reject (552), a broken store (451, nothing queued), and kill -9 of mm-milter
# during a smtp-source run, through the milter and through the before-queue
# filter (submission service): every message delivered intact or refused 4xx.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_write_conf
mkdir -p "$MM_STORE"
MSG=$MM_TMP/msgs
mkdir -p "$MSG"

# The milter with this test's policy: only 127.0.0.1 is trusted, so a client on
# 127.0.0.2 is "foreign" although Postfix's mynetworks (127.0.0.0/8) relays for it.
MILTER_ARGS=(--set milter.trusted_networks=127.0.0.1/32 --set milter.min_size=100K)
start_milter() {
  mm_start_program mm-milter "${MILTER_ARGS[@]}" "$@"
  mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start: $(tail -5 "$MM_TMP/mm-milter.log")"
}
stop_milter() {
  local pid
  pid=$(cat "$MM_TMP/mm-milter.pid")
  kill -TERM "$pid" 2>/dev/null || true
  mm__wait_gone 10 "$pid" || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # libmilter leaves no socket file for inet; wait until the port is free again.
  local end=$((SECONDS + 10))
  while ! mm__port_is_free "$MM_MILTER_PORT" && [ $SECONDS -lt $end ]; do sleep 0.1; done
}

mm_start_program mm-gateway
mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
start_milter
mm_dovecot_start
MM_POSTFIX_EXTRA="$(mm_postfix_doc_lines "$MM_MILTER_PORT")
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $MM_DOVECOT_AUTH_SOCKET"
export MM_POSTFIX_EXTRA
# Also the submission service through mm-milter's before-queue filter (for the kill -9 run).
MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT mm_postfix_start
for line in smtpd_milters non_smtpd_milters milter_protocol milter_default_action milter_mail_macros \
  milter_end_of_data_macros message_size_limit; do
  want=$(mm_postfix_doc_lines "$MM_MILTER_PORT" | awk -F' = ' -v k="$line" '$1 == k { print $2 }')
  got=$(postconf -c "$MM_POSTFIX_DIR" -h "$line")
  [ -n "$want" ] && [ "$got" = "$want" ] || mm_fail "Postfix $line is '$got', docs/postfix.md says '$want'"
done
mm_log "Postfix runs with the main.cf lines of docs/postfix.md"

# Test messages: fake MP4/MP3 media (an ftyp box, then random bytes) so that
# they are quick to make; the milter matches the declared types.
python3 - "$MSG" <<'PY'
import base64, os, sys
d = sys.argv[1]
def media(n, head=b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"):
    return head + os.urandom(n - len(head))
def b64(data):
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76)) + "\r\n"
def att(ctype, name, data):
    return ("Content-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n%s" % (ctype, name, name, b64(data)))
def text(t):
    return "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + t + "\r\n"
def multipart(sub, b, parts, extra=""):
    s = "Content-Type: multipart/%s; boundary=\"%s\"%s\r\n\r\n" % (sub, b, extra)
    for p in parts:
        s += "--" + b + "\r\n" + p
    return s + "--" + b + "--\r\n"
def msg(name, subject, body, headers=""):
    m = ("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: %s\r\nMIME-Version: 1.0\r\n%s" %
         (subject, headers)) + body
    open(os.path.join(d, name), "w", newline="").write(m)

video = lambda n="clip.mp4", size=300 * 1024: att("video/mp4", n, media(size))
msg("one.eml", "one video", multipart("mixed", "b1", [text("Hello Bob, one video."), video()]))
inner = ("From: carol@example.test\r\nTo: alice@example.test\r\nSubject: fwd inner\r\nMIME-Version: 1.0\r\n" +
         multipart("mixed", "in1", [text("Inner text stays."), video("inner.mp4")]))
related = multipart("related", "rel1", [
    "Content-Type: text/html; charset=us-ascii\r\n\r\n<p>related html stays</p>\r\n",
    att("audio/mpeg", "song.mp3", media(200 * 1024, b"ID3\x03\x00\x00\x00\x00\x00\x00"))])
alt = multipart("alternative", "alt1", [text("alt text stays"),
                                        "Content-Type: text/html; charset=us-ascii\r\n\r\n<p>alt html stays</p>\r\n"])
msg("nested.eml", "nested media", multipart("mixed", "top1", [
    alt, video("outer.mp4"), "Content-Type: message/rfc822\r\n\r\n" + inner, related,
    att("application/pdf", "small.pdf", b"%PDF-1.4 small, stays\n" * 10)]))
signed_body = multipart("mixed", "sg2", [text("Signed text."), video("signed.mp4")])
msg("signed.eml", "signed mail", multipart("signed", "sg1", [
    signed_body, "Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n"
    "iQEzBAEBCAAdFiEE\r\n-----END PGP SIGNATURE-----\r\n"],
    "; protocol=\"application/pgp-signature\"; micalg=pgp-sha256"))
msg("pgp.eml", "inline pgp", multipart("mixed", "pg1", [
    text("-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nHello\r\n-----BEGIN PGP SIGNATURE-----\r\n"
         "iQEzBAEBCAAdFiEE\r\n-----END PGP SIGNATURE-----"), video("pgp.mp4")]))
msg("dkim.eml", "dkim signed", multipart("mixed", "dk1", [text("DKIM signed."), video("dkim.mp4")]),
    "DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel; h=from:to:subject; bh=abc=; b=def=\r\n")
msg("big.eml", "big media", multipart("mixed", "bg1", [text("Big one."), video("big.mp4", 700 * 1024)]))
# For smtp-source -F: LF line ends (it appends CRLF to each line itself).
m = ("From: alice@example.test\nTo: bob@example.test\nSubject: load\nMIME-Version: 1.0\n" +
     multipart("mixed", "ld1", [text("Load test."), video("load.mp4", 120 * 1024)]).replace("\r\n", "\n"))
open(os.path.join(d, "load.eml"), "w", newline="").write(m)
PY

# swaks with a message file: NAME [swaks args...]; output in $MM_TMP/swaks.out.
send() {
  local file=$1
  shift
  swaks --server "127.0.0.1:$MM_SMTP_PORT" --from alice@example.test --to bob@example.test \
    --data "@$MSG/$file" "$@" >"$MM_TMP/swaks.out" 2>&1
}
# Print the Maildir file of the message with SUBJECT, waiting for it up to 60 s.
delivered() {
  local subject=$1 end=$((SECONDS + 60)) f
  while [ $SECONDS -lt $end ]; do
    f=$(grep -rlxF -e "Subject: $subject" -e "Subject: $subject"$'\r' "$MM_MAIL_DIR/bob/Maildir/new" 2>/dev/null | head -1) || true
    [ -n "$f" ] && { echo "$f"; return 0; }
    sleep 0.2
  done
  return 1
}
# Succeed when the delivered body of FILE equals the body of message NAME as sent.
body_untouched() {
  cp "$MSG/$2" "$MM_TMP/as-sent.eml"
  printf '\r\n' >>"$MM_TMP/as-sent.eml"   # swaks's CRLF before the final dot
  cmp -s <(mm_body_of "$MM_TMP/as-sent.eml") <(mm_body_of "$1")
}
handles_in() { grep -c '^X-Media-Handle: v=1;' "$1" || true; }

echo "checking: trusted client 127.0.0.1"
send one.eml || mm_fail "swaks (trusted) failed: $(tail -5 "$MM_TMP/swaks.out")"
f=$(delivered "one video") || mm_fail "trusted mail not delivered"
[ "$(handles_in "$f")" = 1 ] || mm_fail "trusted mail not detached"
grep -q 'Hello Bob, one video.' "$f" || mm_fail "text part lost"
mm_log "mail from 127.0.0.1 (trusted) detached"
rm -f "$f"

echo "checking: foreign client 127.0.0.2"
send one.eml --local-interface 127.0.0.2 || mm_fail "swaks (foreign) failed: $(tail -5 "$MM_TMP/swaks.out")"
f=$(delivered "one video") || mm_fail "foreign mail not delivered"
[ "$(handles_in "$f")" = 0 ] && body_untouched "$f" one.eml || mm_fail "foreign mail was altered"
grep -q 'passed (not outgoing' "$MM_TMP/mm-milter.log" || mm_fail "no 'not outgoing' log line"
mm_log "mail from 127.0.0.2 (foreign) delivered untouched, logged"
rm -f "$f"

echo "checking: authenticated client (SASL via Dovecot) from 127.0.0.2"
send one.eml --local-interface 127.0.0.2 --auth PLAIN --auth-user bob --auth-password secret ||
  mm_fail "swaks (auth) failed: $(tail -8 "$MM_TMP/swaks.out")"
grep -q '235 2.7.0' "$MM_TMP/swaks.out" || mm_fail "SMTP AUTH did not succeed"
f=$(delivered "one video") || mm_fail "authenticated mail not delivered"
[ "$(handles_in "$f")" = 1 ] || mm_fail "authenticated mail not detached"
mm_log "authenticated mail from 127.0.0.2 detached"
rm -f "$f"

echo "checking: nested and multiple media"
send nested.eml || mm_fail "swaks (nested) failed"
f=$(delivered "nested media") || mm_fail "nested mail not delivered"
[ "$(handles_in "$f")" = 3 ] || mm_fail "nested mail: $(handles_in "$f") handles, want 3"
for s in 'alt text stays' '<p>alt html stays</p>' 'Inner text stays.' '<p>related html stays</p>' \
  'Subject: fwd inner' 'JVBERi0xLjQgc21hbGwsIHN0YXlzCiVQREYtMS40IHNtYWxsLCBzdGF5cwol'; do
  grep -qF "$s" "$f" || mm_fail "nested mail lost '$s'"
done
grep -q 'detached 3' "$MM_TMP/mm-milter.log" || mm_fail "no 'detached 3' log line"
mm_log "video in the mail, video inside a forwarded message/rfc822, audio in multipart/related: 3 detached; other parts kept"
rm -f "$f"

echo "checking: signed and encrypted mail is never altered"
for c in "signed.eml:signed mail:multipart/signed" "pgp.eml:inline pgp:inline PGP"; do
  IFS=: read -r file subj why <<<"$c"
  send "$file" || mm_fail "swaks ($file) failed"
  f=$(delivered "$subj") || mm_fail "$file not delivered"
  [ "$(handles_in "$f")" = 0 ] && body_untouched "$f" "$file" || mm_fail "$file was altered"
  grep -qF "skipped (signed or encrypted content ($why))" "$MM_TMP/mm-milter.log" || mm_fail "no log line for $why"
  mm_log "$why: delivered byte-identical, reason logged"
  rm -f "$f"
done
send dkim.eml || mm_fail "swaks (dkim) failed"
f=$(delivered "dkim signed") || mm_fail "DKIM mail not delivered"
[ "$(handles_in "$f")" = 0 ] && body_untouched "$f" dkim.eml || mm_fail "DKIM-signed mail was altered"
grep -q 'passed (DKIM-signed' "$MM_TMP/mm-milter.log" || mm_fail "no DKIM log line"
mm_log "DKIM-signed mail delivered byte-identical, reason logged"
rm -f "$f"

echo "checking: milter.max_size"
stop_milter
start_milter --set milter.max_size=500K --set milter.over_max_size=pass
send big.eml || mm_fail "swaks (big, pass) failed"
f=$(delivered "big media") || mm_fail "big mail not delivered"
[ "$(handles_in "$f")" = 0 ] && body_untouched "$f" big.eml || mm_fail "over-max mail was altered with over_max_size=pass"
mm_log "over max_size, pass: delivered with the media inline"
rm -f "$f"
stop_milter
start_milter --set milter.max_size=500K --set milter.over_max_size=reject
objects_before=$(find "$MM_STORE/objects" -type f | wc -l)
if send big.eml; then mm_fail "over-max mail accepted with over_max_size=reject"; fi
grep -q '552 5.3.4' "$MM_TMP/swaks.out" || mm_fail "swaks did not see 552 5.3.4: $(tail -4 "$MM_TMP/swaks.out")"
[ "$(find "$MM_STORE/objects" -type f | wc -l)" = "$objects_before" ] || mm_fail "a rejected mail stored media"
mm_log "over max_size, reject: swaks saw 552 5.3.4, nothing stored"
stop_milter
start_milter

echo "checking: broken store -> 4xx, nothing delivered, nothing queued"
before=$(mm_count_messages bob)
mv "$MM_STORE/objects" "$MM_STORE/objects.away"
echo "not a directory" >"$MM_STORE/objects"   # root ignores permissions; a file cannot be written into
if send one.eml; then mm_fail "mail accepted while the store is broken"; fi
grep -qE '<\*\* +4[0-9][0-9] ' "$MM_TMP/swaks.out" || mm_fail "swaks did not see a 4xx: $(tail -4 "$MM_TMP/swaks.out")"
sleep 2
[ "$(mm_count_messages bob)" = "$before" ] || mm_fail "a mail was delivered while the store was broken"
postqueue -c "$MM_POSTFIX_DIR" -p | grep -q 'Mail queue is empty' || mm_fail "Postfix queued the refused mail"
rm -f "$MM_STORE/objects"
mv "$MM_STORE/objects.away" "$MM_STORE/objects"
[ -z "$(ls -A "$MM_STORE/tmp" 2>/dev/null)" ] || mm_fail "the store kept partial files in tmp/"
mm_log "store broken: swaks saw 4xx, nothing delivered or queued, no partial file"

# kill -9 of mm-milter while two smtp-source clients send N media mails to PORT
# (the milter's smtpd, or the submission smtpd of the before-queue filter).
# DUPS=1: a message refused with 4xx may still have been delivered. That is the
# filter's case: killed after the after-filter smtpd queued a message and before
# the client heard so, the client gets 451 and would send it again (a duplicate,
# never a loss; RFC 5321 6.1). The milter has no such moment: Postfix commits
# its queue file only after the milter's last reply.
kill_during_load() {
local port=$1 label=$2 dups=${3:-0}
echo "checking: kill -9 of mm-milter during a smtp-source run ($label)"
N=300
rm -f "$MM_MAIL_DIR/bob/Maildir/new/"* "$MM_MAIL_DIR/bob/Maildir/cur/"* 2>/dev/null || true
log_mark=$(wc -l <"$MM_POSTFIX_LOG")
# smtp-source stops at the first 4xx, so each of two clients runs it again until
# its share is done. -c prints a running count of DATA commands it saw accepted;
# one message per session (its default), so a refused one ends that run.
client() {
  local share=$1 id=$2 ok=0 refused=0 out n
  out=$MM_TMP/src-$id.out
  while [ $((ok + refused)) -lt "$share" ]; do
    if smtp-source -c -m $((share - ok - refused)) -f alice@example.test -t bob@example.test \
      -F "$MSG/load.eml" "127.0.0.1:$port" >"$out" 2>&1; then
      ok=$((ok + $(tr '\r' '\n' <"$out" | grep -oE '^[0-9]+' | tail -1)))
    else
      n=$(tr '\r' '\n' <"$out" | grep -oE '^[0-9]+' | tail -1) || n=0
      grep -qE 'rejected: 4[0-9][0-9] ' "$out" || { echo "ERROR $(tail -1 "$out")" >"$MM_TMP/src-$id.res"; return; }
      # The counter counts the DATA command, so a message refused at its end is in it.
      grep -q 'end of data rejected' "$out" && n=$((n - 1))
      ok=$((ok + n))
      refused=$((refused + 1))
    fi
  done
  echo "$ok $refused" >"$MM_TMP/src-$id.res"
}
client $((N / 2)) 1 &
c1=$!
client $((N - N / 2)) 2 &
c2=$!
mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "the filter is not up"
mm_wait_delivered bob 60 60 || mm_fail "smtp-source: fewer than 60 delivered"
kill -KILL "$(cat "$MM_TMP/mm-milter.pid")"
wait "$(cat "$MM_TMP/mm-milter.pid")" 2>/dev/null || true
sleep 1
start_milter
wait "$c1" "$c2" || true
read -r ok1 ref1 <"$MM_TMP/src-1.res" || true
read -r ok2 ref2 <"$MM_TMP/src-2.res" || true
[[ "$ok1$ref1$ok2$ref2" =~ ^[0-9]+$ ]] || mm_fail "smtp-source failed: $(cat "$MM_TMP"/src-*.res)"
accepted=$((ok1 + ok2))
refused=$((ref1 + ref2))
# Wait until Postfix has delivered all it accepted (the queue is empty).
end=$((SECONDS + 90))
until postqueue -c "$MM_POSTFIX_DIR" -p | grep -q 'Mail queue is empty'; do
  [ $SECONDS -lt $end ] || mm_fail "Postfix queue not empty after 90 s"
  sleep 0.5
done
tail -n +"$((log_mark + 1))" "$MM_POSTFIX_LOG" >"$MM_TMP/run.log"
queued=$(grep -c 'qmgr.*from=<alice@example.test>.*(queue active)' "$MM_TMP/run.log" || true)
delivered_n=$(mm_count_messages bob)
mm_info "$label: smtp-source: $N sent, $accepted accepted (250), $refused refused (4xx); Postfix queued $queued, delivered $delivered_n"
[ $((accepted + refused)) = "$N" ] || mm_fail "accepted $accepted + refused $refused != $N"
[ "$queued" = "$delivered_n" ] || mm_fail "Postfix queued $queued, $delivered_n delivered"
if [ "$dups" = 1 ]; then
  [ "$delivered_n" -ge "$accepted" ] && [ "$delivered_n" -le "$N" ] ||
    mm_fail "smtp-source saw $accepted accepted of $N, $delivered_n delivered"
  [ "$delivered_n" = "$accepted" ] ||
    mm_info "$((delivered_n - accepted)) message(s) refused with 4xx had been queued by the after-filter smtpd (would be duplicates)"
else
  [ "$accepted" = "$delivered_n" ] || mm_fail "smtp-source saw $accepted accepted, $delivered_n delivered"
fi
[ "$refused" -gt 0 ] || mm_info "no message was in flight at the kill"
# Every delivered message, in one Python process (a process or two per message
# made this check most of the test's time on a loaded machine): a message
# without a handle must carry the media itself, whole; each handle's URL
# (RFC 2231 continuations joined) must serve bytes with the handle's SHA-256.
# Prints "BAD CHECKED".
check_delivered() {
  python3 - "$MM_MAIL_DIR/bob/Maildir/new" <<'PY'
import hashlib, os, re, ssl, sys, urllib.request
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
bad = checked = 0
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    text = open(os.path.join(d, name), "rb").read().decode("ascii", "replace").replace("\r\n", "\n")
    handles = list(re.finditer(r"^X-Media-Handle: v=1;((?:.*)(?:\n[ \t].*)*)", text, re.M))
    if not handles:
        if re.search(r"^X-Media-Handles:", text, re.M) or 'filename="load.mp4"' not in text:
            bad += 1
        continue
    for m in handles:
        v = m.group(1).replace("\n", "")
        parts = dict(re.findall(r'url\*(\d+)="([^"]*)"', v))
        url = "".join(parts[k] for k in sorted(parts, key=int)) if parts else \
            (re.search(r'url="([^"]*)"', v) or re.search(r"url=([^;\s]*)", v)).group(1)
        sha = re.search(r"sha256=([0-9a-f]{64})", v).group(1)
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                got = hashlib.sha256(r.read()).hexdigest()
        except Exception:
            got = ""
        bad += got != sha
        checked += 1
print(bad, checked)
PY
}
read -r bad checked < <(check_delivered)
[ "$bad" = 0 ] || mm_fail "$bad delivered messages with a broken handle"
[ "$checked" -gt 0 ] || mm_fail "no handle was checked"
mm_log "$label: kill -9 during $N messages: $accepted accepted = $delivered_n delivered, $refused refused 4xx, all $checked handles resolve (sha256 checked)"
}
kill_during_load "$MM_SMTP_PORT" milter
kill_during_load "$MM_SUBMIT_PORT" "before-queue filter" 1
echo "milter_policy: passed"
