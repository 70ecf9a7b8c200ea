#!/usr/bin/env bash
# fetcher_media.test.sh - mm-fetcher's background downloader with the real programs:
# sender gateway down at first (mail held), up later (mail appears with the video
# intact), a gateway serving a wrong byte (never presented), a restart resuming the
# on-disk queue, receipts, and SSRF handles (loopback, 10/8, 169.254.169.254, file:,
# http:, a 302 redirect) never fetched without fetcher.allow_private / allow_insecure.
set -u
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

check() { echo "check: $*"; }

mm_tmpdir_init
mm_mediamail_start
FLOG=$MM_TMP/mm-fetcher.log
P=pop3://127.0.0.1:$MM_FETCHER_PORT

# Number of messages the fetcher lists to bob right now.
listed() { curl -s --max-time 60 -u "bob:$MM_POP3_PASS" "${1:-$P}/" | grep -c '^[0-9]'; }
# Poll (as a mail client would) until N messages are listed, at most T seconds.
wait_listed() {
  local n=$1 t=$2 end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    [ "$(listed "${3:-$P}")" -ge "$n" ] && return 0
    sleep 2
  done
  return 1
}
gateway_stop() { kill -TERM "$(cat "$MM_TMP/mm-gateway.pid")"; sleep 0.5; }
gateway_start() {
  mm_start_program mm-gateway
  mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not restart"
}

mm_make_video "$MM_TMP/clip.mp4" 3
SENT=$(sha256sum "$MM_TMP/clip.mp4" | cut -c1-64)

check "sender gateway down: the media mail is held back, the login does not wait for it"
gateway_stop
mm_swaks_send alice@example.test bob@example.test "Clip one" "the clip" "$MM_TMP/clip.mp4" video/mp4
mm_wait_delivered bob 1 60 || mm_fail "media mail not delivered"
t0=$SECONDS
n=$(listed)
[ "$n" -eq 0 ] || mm_fail "media mail listed ($n) before its media was downloaded"
[ $((SECONDS - t0)) -le 5 ] || mm_fail "login took $((SECONDS - t0))s with the gateway down"
grep -q "download failed" "$FLOG" || mm_fail "no failed download attempt logged"
mm_log "held back, login took $((SECONDS - t0))s, retry scheduled"

check "gateway up again: the next polls show the mail once the media is verified"
gateway_start
wait_listed 1 90 || { tail -5 "$FLOG"; mm_fail "mail did not appear after the gateway came back"; }
# A login re-inserts while the download arrives and checks the SHA-256 itself,
# so the mail can be listed a moment before the downloader logs its own check.
for _ in $(seq 50); do grep -q "verified" "$FLOG" && break; sleep 0.2; done
grep -q "verified" "$FLOG" || mm_fail "no verified download logged"
curl -s -u "bob:$MM_POP3_PASS" "$P/1" -o "$MM_TMP/one.eml" || mm_fail "RETR 1"
mm_extract_attachment "$MM_TMP/one.eml" clip.mp4 "$MM_TMP/got1.mp4"
[ "$(sha256sum "$MM_TMP/got1.mp4" | cut -c1-64)" = "$SENT" ] || mm_fail "video differs after re-insertion"
mm_log "mail shown with the video byte-identical (sha256 $SENT)"

check "python poplib reads the same presented message; UIDL stable over two sessions"
python3 - "$MM_FETCHER_PORT" "$MM_TMP/one.eml" <<'PY' || mm_fail "poplib"
import poplib, sys
port, want = int(sys.argv[1]), open(sys.argv[2], "rb").read()
ids = []
for _ in range(2):
    p = poplib.POP3("127.0.0.1", port, timeout=60)
    p.user("bob"); p.pass_("secret")
    resp, lines, octets = p.retr(1)
    got = b"\r\n".join(lines) + b"\r\n"
    assert got == want, "poplib RETR differs from curl's"
    size = int(p.list(1).split()[2])
    assert size == len(want), (size, len(want))
    ids.append(p.uidl(1))
    p.quit()
assert ids[0] == ids[1], ids
PY
mm_log "poplib: identical bytes, LIST size exact, UIDL stable"

check "receipt sent to the sender's gateway for the recipient of Delivered-To"
for _ in $(seq 30); do grep -q "receipt" "$FLOG" && break; sleep 1; done
if grep -q "receipt sent for bob@example.test" "$FLOG"; then
  mm_log "receipt accepted by the gateway"
elif grep -q "receipt refused with HTTP" "$FLOG"; then
  mm_log "receipt sent; this gateway does not implement receipts yet ($(grep -o 'receipt refused with HTTP [0-9]*' "$FLOG" | head -1))"
else
  grep receipt "$FLOG" | tail -3
  mm_fail "no receipt attempt logged"
fi

check "a gateway serving a wrong byte never produces a presented message"
mm_make_video "$MM_TMP/clip2.mp4" 2
before=$(mm_count_messages bob)
mm_swaks_send alice@example.test bob@example.test "Clip two" "the second clip" "$MM_TMP/clip2.mp4" video/mp4
mm_wait_delivered bob $((before + 1)) 60 || mm_fail "second media mail not delivered"
# The stored object of the newest item: flip one byte in its middle.
obj=$(find "$MM_STORE" -type f -size +1M -newer "$MM_TMP/clip2.mp4" | head -n1)
[ -n "$obj" ] || mm_fail "cannot find the second video in the sender's store"
python3 - "$obj" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x01]))
PY
for _ in $(seq 10); do
  [ "$(listed)" -eq 1 ] || mm_fail "a message with corrupted media was listed"
  grep -q "SHA-256 mismatch" "$FLOG" && break
  sleep 2
done
grep -q "SHA-256 mismatch" "$FLOG" || mm_fail "no SHA-256 mismatch logged"
[ "$(listed)" -eq 1 ] || mm_fail "a message with corrupted media was listed"
! ls "$MM_TMP/fetcher-cache/media/"*.part >/dev/null 2>&1 || mm_info "partial files kept: $(ls "$MM_TMP/fetcher-cache/media/")"
mm_log "wrong byte: SHA-256 mismatch, message still held, retried later"

check "restart: the queue on disk is resumed"
ls "$MM_TMP/fetcher-cache/jobs/"*.job >/dev/null 2>&1 || mm_fail "no job file on disk for the pending download"
kill -TERM "$(cat "$MM_TMP/mm-fetcher.pid")"
mm__wait_gone 10 "$(cat "$MM_TMP/mm-fetcher.pid")" || mm_fail "mm-fetcher did not stop"
mm_start_program mm-fetcher --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT"
mm_wait_port "$MM_FETCHER_PORT" 20 || mm_fail "mm-fetcher did not restart"
grep -q "jobs resumed" "$FLOG" || mm_fail "restart did not resume the queue"
mm_log "queue resumed after restart"

# Another fetcher over the same mailbox: its own cache and port, extra settings.
other_fetcher() {   # other_fetcher NAME [--set ...]; sets OPORT, OPID, OLOG
  local name=$1
  shift
  OPORT=$(mm_free_port) || mm_fail "no free port"
  OLOG=$MM_TMP/fetcher-$name.log
  "$(mm_bin mm-fetcher)" -c "$MM_CONF" --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT" \
    --set fetcher.listen="127.0.0.1:$OPORT" --set fetcher.cache_dir="$MM_TMP/cache-$name" --set log.level=debug \
    "$@" >>"$OLOG" 2>&1 &
  OPID=$!
  mm_register_pid "$OPID"
  mm_wait_port "$OPORT" 20 || mm_fail "fetcher $name did not start"
}
other_stop() { kill -TERM "$OPID"; mm__wait_gone 15 "$OPID" || mm_fail "fetcher did not stop"; }

check "fetcher.prefetch_interval: media downloaded in the background before any client logs in"
printf 'secret\n' >"$MM_TMP/bob.pass"
chmod 600 "$MM_TMP/bob.pass"
other_fetcher prefetch --set fetcher.prefetch_interval=2s --set fetcher.prefetch_user=bob \
  --set fetcher.prefetch_password_file="$MM_TMP/bob.pass"
for _ in $(seq 30); do [ -f "$MM_TMP/cache-prefetch/media/$SENT" ] && break; sleep 1; done
[ -f "$MM_TMP/cache-prefetch/media/$SENT" ] || { tail -5 "$OLOG"; mm_fail "prefetch did not download the media"; }
! grep -q "session user=bob" "$OLOG" || mm_fail "a client session happened during the prefetch check"
other_stop
mm_log "media verified in the cache with no client session"

check "fetcher.mode = ask: mail shown at once with its link; 'mm-fetcher fetch SHA256' downloads it"
other_fetcher ask --set fetcher.mode=ask --set fetcher.timeout=5s
n=$(listed "pop3://127.0.0.1:$OPORT")
[ "$n" -eq 2 ] || mm_fail "ask mode lists $n, want 2 (both media mails at once)"
curl -s -u "bob:$MM_POP3_PASS" "pop3://127.0.0.1:$OPORT/1" | grep -q '^X-Media-Handle: v=1' ||
  mm_fail "ask mode: the mail lacks its location part"
[ ! -f "$MM_TMP/cache-ask/media/$SENT" ] || mm_fail "ask mode downloaded without being asked"
sleep 2
[ ! -f "$MM_TMP/cache-ask/media/$SENT" ] || mm_fail "ask mode downloaded without being asked"
path=$("$(mm_bin mm-fetcher)" -c "$MM_CONF" --set fetcher.cache_dir="$MM_TMP/cache-ask" --set fetcher.timeout=5s \
  fetch "$SENT") || mm_fail "mm-fetcher fetch failed: $(tail -3 "$OLOG")"
[ "$(sha256sum "$path" | cut -c1-64)" = "$SENT" ] || mm_fail "fetched file differs"
"$(mm_bin mm-fetcher)" -c "$MM_CONF" --set fetcher.cache_dir="$MM_TMP/cache-ask" fetch "$(printf 'f%.0s' $(seq 64))" \
  >/dev/null 2>&1 && mm_fail "fetch of an unknown sha256 succeeded"
other_stop
mm_log "shown with the link at once; fetched on request to $path"

check "fetcher.ignore_senders without fetcher.authserv_id: From: alone is not trusted; a cache_quota smaller than the media: shown as is, nothing downloaded"
# These mails carry no Authentication-Results: the list must not match a From: anyone can write.
other_fetcher quota --set fetcher.ignore_senders=@example.test
listed "pop3://127.0.0.1:$OPORT" >/dev/null
for _ in $(seq 30); do [ -n "$(ls "$MM_TMP/cache-quota/media/")" ] && break; sleep 1; done
[ -n "$(ls "$MM_TMP/cache-quota/media/")" ] || mm_fail "ignore_senders matched an unvouched From:"
other_stop
other_fetcher quota2 --set fetcher.cache_quota=1M
[ "$(listed "pop3://127.0.0.1:$OPORT")" -eq 2 ] || mm_fail "over-quota mail not shown"
[ -z "$(ls "$MM_TMP/cache-quota2/media/")" ] || mm_fail "media over the quota downloaded"
other_stop
mm_log "unvouched sender not ignored; over-quota media: location part kept, no download"

check "SSRF: handles at 127.0.0.1, 10.0.0.1, 169.254.169.254, file:, http: are not fetched without allow_private/allow_insecure"
# A second fetcher over the same mailbox with the default (safe) settings.
SPORT=$(mm_free_port) || mm_fail "no free port"
SLOG=$MM_TMP/safe-fetcher.log
"$(mm_bin mm-fetcher)" -c "$MM_CONF" --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT" \
  --set fetcher.listen="127.0.0.1:$SPORT" --set fetcher.cache_dir="$MM_TMP/safe-cache" \
  --set fetcher.allow_private=false --set fetcher.allow_insecure=false --set log.level=debug \
  >>"$SLOG" 2>&1 &
mm_register_pid $!
mm_wait_port "$SPORT" 20 || mm_fail "safe fetcher did not start"
S=pop3://127.0.0.1:$SPORT
# Handle mails built from a stored one (clip one's): the same sha256, size, pin, layout; another URL.
stored=$(grep -l "$SENT" "$MM_MAIL_DIR"/bob/Maildir/*/* | head -n1)
[ -n "$stored" ] || mm_fail "no stored media mail to build handles from"
make_variant() {   # make_variant SUBJECT URL SHA [RCPT]: SHA = 2 hex digits (x 32, its own download) or 64
  python3 - "$stored" "$1" "$2" "$3" >"$MM_TMP/variant.eml" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read().decode("utf-8", "surrogateescape")
head, sep, body = data.partition("\n\n") if "\r\n\r\n" not in data else data.partition("\r\n\r\n")
head = re.sub(r"(?m)^Subject:.*$", "Subject: " + sys.argv[2], head)
# Unfold the X-Media-Handle field, swap its url parameter(s) for one plain url.
def fix(m):
    v = re.sub(r"\r?\n[ \t]+", " ", m.group(0))
    v = re.sub(r'url\*?[0-9]*\*?="[^"]*";?\s*', "", v)
    return v.replace("X-Media-Handle: v=1;", 'X-Media-Handle: v=1; url="%s";' % sys.argv[3], 1)
body = re.sub(r"X-Media-Handle:.*?(?=\r?\n[^ \t])", fix, body, flags=re.S)
body = re.sub(r"sha256=[0-9a-f]{64}", "sha256=" + (sys.argv[4] * 32 if len(sys.argv[4]) == 2 else sys.argv[4]), body)
sys.stdout.write(head + sep + body)
PY
  local before rcpt=${4:-bob}
  before=$(mm_count_messages "$rcpt")
  mm_swaks_send_file alice@example.test "$rcpt@example.test" "$MM_TMP/variant.eml"
  mm_wait_delivered "$rcpt" $((before + 1)) 60 || mm_fail "variant $1 not delivered"
}
make_variant "ssrf ten" "https://10.0.0.1/m/a/b" a1
make_variant "ssrf metadata" "https://169.254.169.254/latest/meta-data/x" a2
make_variant "ssrf file" "file:///etc/passwd" a3
make_variant "ssrf http" "http://127.0.0.1:$MM_GATEWAY_PORT/m/a/b" a4
total=$(mm_count_messages bob)
# Every handle here is refused: each mail is shown at once, as it is, with its link.
wait_listed "$total" 60 "$S" || { tail -20 "$SLOG"; mm_fail "safe fetcher lists $(listed "$S") of $total"; }
python3 - "$SPORT" "$total" <<'PY' || mm_fail "SSRF mails not shown as they are"
import email, email.policy, poplib, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
p = poplib.POP3("127.0.0.1", port, timeout=60)
p.user("bob"); p.pass_("secret")
for i in range(1, n + 1):
    raw = b"\r\n".join(p.retr(i)[1])
    assert b"root:x:0:0" not in raw, "file: URL was read"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    names = [q.get_filename() for q in msg.walk() if q.get_filename()]
    assert not any(n.endswith(".mp4") for n in names), ("media fetched", i, msg["Subject"], names)
    assert b"X-Media-Handle:" in raw, ("location part missing", i)
p.quit()
PY
for s in a1a1a1a1a1a1a1a1 a2a2a2a2a2a2a2a2; do
  grep -q "media $s: address refused" "$SLOG" || mm_fail "media $s: no refused address logged"
done
grep -q "media a4a4a4a4a4a4a4a4 not fetched" "$SLOG" || mm_fail "http: handle not refused"
grep -q "bad handle left in place: bad_value url" "$SLOG" || mm_fail "file: handle not refused"
mm_log "127.0.0.1, 10.0.0.1, 169.254.169.254, file:, http: all shown with the link, nothing fetched"

check "SSRF: a 302 redirect is not followed, even with allow_private"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$MM_TMP/r.key" -out "$MM_TMP/r.crt" -days 1 \
  -subj /CN=127.0.0.1 >/dev/null 2>&1 || mm_fail "openssl req"
RPIN="sha256//$(openssl x509 -in "$MM_TMP/r.crt" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64 -w0)"
RPORT=$(mm_free_port) || mm_fail "no free port"
python3 - "$RPORT" "$MM_TMP/r.crt" "$MM_TMP/r.key" "https://127.0.0.1:$MM_GATEWAY_PORT/m/redirected/target" \
  >"$MM_TMP/redirect.log" 2>&1 <<'PY' &
import http.server, ssl, sys
port, crt, key, target = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("GET", self.path, flush=True)
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
mm_register_pid $!
mm_wait_port "$RPORT" 10 || mm_fail "redirect server did not start"
python3 - "$stored" "$RPIN" >"$MM_TMP/pinned.eml" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read().decode("utf-8", "surrogateescape")
data = re.sub(r'pin="[^"]*"', 'pin="%s"' % sys.argv[2], data)
# Media the fetcher has not got yet, so that it must ask the server.
sys.stdout.write(re.sub(r'sha256=[0-9a-f]{64}', 'sha256=' + "ab" * 32, data))
PY
stored_orig=$stored
stored=$MM_TMP/pinned.eml
make_variant "ssrf redirect" "https://127.0.0.1:$RPORT/m/a/b" ab
stored=$stored_orig
for _ in $(seq 15); do
  listed >/dev/null   # a client poll makes the fetcher read the new mail
  grep -q "GET /m/a/b" "$MM_TMP/redirect.log" && break
  sleep 1
done
grep -q "GET /m/a/b" "$MM_TMP/redirect.log" || { tail "$FLOG"; mm_fail "the fetcher never asked the redirecting server"; }
sleep 2
! grep -q "redirected" "$MM_TMP/mm-gateway.log" || mm_fail "the redirect was followed to the gateway"
[ "$(grep -c "GET /m/a/b" "$MM_TMP/redirect.log")" -ge 1 ] || mm_fail "redirect server log"
mm_log "302 answered, Location not followed (the gateway never saw the target)"

check "Range resume: a transfer cut off halfway is resumed with a Range request, then verified and shown"
# A server that drops the first connection after half the bytes and honours Range after.
python3 - "$(mm_free_port)" "$MM_TMP/r.crt" "$MM_TMP/r.key" "$MM_TMP/clip.mp4" >"$MM_TMP/cut.log" 2>&1 <<'PY' &
import http.server, ssl, sys
port, crt, key, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
print("PORT", port, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        rng = self.headers.get("Range")
        print("GET", self.path, "Range:", rng, flush=True)
        if "/big/" in self.path:
            # More bytes than the handle says, with no length announced up front.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data + b"x" * 100000)
            self.close_connection = True
            return
        if rng is None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        start = int(rng.split("=")[1].split("-")[0])
        self.send_response(206)
        self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
mm_register_pid $!
for _ in $(seq 50); do grep -q '^PORT' "$MM_TMP/cut.log" && break; sleep 0.1; done
CUTPORT=$(awk '/^PORT/ {print $2}' "$MM_TMP/cut.log")
mm_wait_port "$CUTPORT" 10 || mm_fail "cut-off server did not start"
stored=$MM_TMP/pinned.eml
make_variant "resume" "https://127.0.0.1:$CUTPORT/m/cut/t" "$SENT" carol
stored=$stored_orig
other_fetcher resume
R=pop3://127.0.0.1:$OPORT
ok=0
for _ in $(seq 45); do
  [ "$(curl -s --max-time 60 -u "carol:$MM_POP3_PASS" "$R/" | grep -c '^[0-9]')" -eq 1 ] && { ok=1; break; }
  sleep 1
done
[ $ok = 1 ] || { cat "$MM_TMP/cut.log"; tail -5 "$OLOG"; mm_fail "resumed media mail never shown"; }
grep -q "Range: None" "$MM_TMP/cut.log" || mm_fail "no first (full) request seen"
half=$(($(stat -c %s "$MM_TMP/clip.mp4") / 2))
grep -q "Range: bytes=$half-" "$MM_TMP/cut.log" || { cat "$MM_TMP/cut.log"; mm_fail "no Range request from byte $half"; }
curl -s -u "carol:$MM_POP3_PASS" "$R/1" -o "$MM_TMP/resumed.eml"
mm_extract_attachment "$MM_TMP/resumed.eml" clip.mp4 "$MM_TMP/resumed.mp4"
[ "$(sha256sum "$MM_TMP/resumed.mp4" | cut -c1-64)" = "$SENT" ] || mm_fail "resumed video differs"
other_stop
mm_log "cut at $half bytes, resumed with Range: bytes=$half-, video intact"

check "a server sending more bytes than the handle says is cut off; nothing presented"
stored=$MM_TMP/pinned.eml   # the test server's key
make_variant "oversize" "https://127.0.0.1:$CUTPORT/m/big/t" "$SENT" alice
stored=$stored_orig
other_fetcher big
for _ in $(seq 20); do
  [ "$(curl -s --max-time 60 -u "alice:$MM_POP3_PASS" "pop3://127.0.0.1:$OPORT/" | grep -c '^[0-9]')" -eq 0 ] ||
    mm_fail "a message with oversized media was listed"
  grep -q "server sent more than the handle's size" "$OLOG" && break
  sleep 1
done
grep -q "server sent more than the handle's size" "$OLOG" || { tail -5 "$OLOG"; mm_fail "oversize not detected"; }
[ ! -e "$MM_TMP/cache-big/media/$SENT" ] && [ ! -e "$MM_TMP/cache-big/media/$SENT.part" ] ||
  mm_fail "oversized download kept in the cache"
other_stop
mm_log "transfer aborted past the handle's size, partial file removed, message held"

check "fetcher.hold_max: media that cannot be verified is shown as it is once the hold expires"
other_fetcher hold --set fetcher.hold_max=3s --set fetcher.login_wait=0
n0=$(listed "pop3://127.0.0.1:$OPORT")
sleep 4
n1=$(listed "pop3://127.0.0.1:$OPORT")
[ "$n1" -gt "$n0" ] || mm_fail "nothing released after hold_max ($n0 then $n1 listed)"
grep -q "held longer than fetcher.hold_max" "$OLOG" || mm_fail "hold_max release not logged"
other_stop
mm_log "$n0 listed at first, $n1 after hold_max (corrupted media shown with its link)"

check "no process left behind by the fetchers; SIGTERM ends them cleanly"
kill -TERM "$(cat "$MM_TMP/mm-fetcher.pid")"
mm__wait_gone 15 "$(cat "$MM_TMP/mm-fetcher.pid")" || mm_fail "mm-fetcher did not stop within 15s"
mm_log "stopped"

echo "PASS: fetcher_media"
