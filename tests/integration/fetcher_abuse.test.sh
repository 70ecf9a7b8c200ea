#!/usr/bin/env bash
# fetcher_abuse.test.sh - mm-fetcher's downloader against hostile or broken sources:
# a handle at a URL that answers 404 must not stop a later mail naming the same
# SHA-256 at the right URL (jobs per source); copies of mail deleted with DELE+QUIT
# are removed at the next session; three parallel 3 MB downloads under a 4 MiB
# fetcher.cache_quota never put more than that on disk; a server sending 2 bytes/s
# with parallel = 1 delays another host's media by at most about one timeout.
set -u
: "${MM_BUILD_DIR:?set MM_BUILD_DIR}" "${MM_SOURCE_DIR:?set MM_SOURCE_DIR}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

check() { echo "check: $*"; }

mm_tmpdir_init
mm_mediamail_start

fetcher() {   # fetcher NAME [--set ...]; sets OPORT, OPID, OLOG, OCACHE
  local name=$1
  shift
  OPORT=$(mm_free_port) || mm_fail "no free port"
  OLOG=$MM_TMP/fetcher-$name.log
  OCACHE=$MM_TMP/cache-$name
  "$(mm_bin mm-fetcher)" -c "$MM_CONF" --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT" \
    --set fetcher.listen="127.0.0.1:$OPORT" --set fetcher.cache_dir="$OCACHE" --set log.level=debug \
    --set fetcher.timeout=3s --set fetcher.login_wait=0 "$@" >>"$OLOG" 2>&1 &
  OPID=$!
  mm_register_pid "$OPID"
  mm_wait_port "$OPORT" 20 || mm_fail "fetcher $name did not start"
}
fetcher_stop() { kill -TERM "$OPID"; mm__wait_gone 15 "$OPID" || mm_fail "fetcher did not stop"; }
listed() { curl -s --max-time 60 -u "bob:$MM_POP3_PASS" "pop3://127.0.0.1:$OPORT/" | grep -c '^[0-9]'; }
# Deletes every message of bob's upstream mailbox (Dovecot directly).
clear_upstream() {
  python3 - "$MM_POP3_PORT" "$MM_POP3_PASS" <<'PY' || mm_fail "cannot clear the upstream mailbox"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
p.user("bob"); p.pass_(sys.argv[2])
for i in range(1, len(p.list()[1]) + 1):
    p.dele(i)
p.quit()
PY
}

mm_make_video "$MM_TMP/clip.mp4" 3
SENT=$(sha256sum "$MM_TMP/clip.mp4" | cut -c1-64)
mm_swaks_send alice@example.test bob@example.test "Clip" "the clip" "$MM_TMP/clip.mp4" video/mp4
mm_wait_delivered bob 1 60 || mm_fail "media mail not delivered"
cp "$(grep -l "$SENT" "$MM_MAIL_DIR"/bob/Maildir/*/* | head -n1)" "$MM_TMP/stored.eml"
GOOD_URL=$(python3 -c '
import re, sys
d = re.sub(r"\r?\n[ \t]+", " ", open(sys.argv[1], errors="replace").read())
h = re.search(r"X-Media-Handle:[^\r\n]*", d).group(0)
parts = re.findall(r"url(?:\*([0-9]+))?\*?=\"([^\"]*)\"", h)
print("".join(v for _, v in sorted(parts, key=lambda p: int(p[0] or 0))))' "$MM_TMP/stored.eml")
[ -n "$GOOD_URL" ] || mm_fail "no url in the stored handle"
clear_upstream

# variant SUBJECT URL SHA256 [SIZE [PIN]]: the stored mail with its handle pointed elsewhere.
variant() {
  python3 - "$MM_TMP/stored.eml" "$1" "$2" "$3" "${4:-}" "${5:-}" >"$MM_TMP/variant.eml" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read().decode("utf-8", "surrogateescape")
subject, url, sha, size, pin = sys.argv[2:7]
head, sep, body = data.partition("\n\n") if "\r\n\r\n" not in data else data.partition("\r\n\r\n")
head = re.sub(r"(?m)^Subject:.*$", "Subject: " + subject, head)
def fix(m):
    v = re.sub(r"\r?\n[ \t]+", " ", m.group(0))
    v = re.sub(r'url\*?[0-9]*\*?="[^"]*";?\s*', "", v)
    if size:
        v = re.sub(r'seg[a-z0-9]*\*?[0-9]*\*?=("[^"]*"|[^;\s]*);?\s*', "", v)
        v = re.sub(r"(?<![a-z])size=[0-9]+", "size=" + size, v)
    if pin:
        v = re.sub(r'pin="[^"]*"', 'pin="%s"' % pin, v)
    return v.replace("X-Media-Handle: v=1;", 'X-Media-Handle: v=1; url="%s";' % url, 1)
body = re.sub(r"X-Media-Handle:.*?(?=\r?\n[^ \t])", fix, body, flags=re.S)
body = re.sub(r"sha256=[0-9a-f]{64}", "sha256=" + sha, body)
sys.stdout.write(head + sep + body)
PY
  local before
  before=$(mm_count_messages bob)
  mm_swaks_send_file alice@example.test bob@example.test "$MM_TMP/variant.eml"
  mm_wait_delivered bob $((before + 1)) 60 || mm_fail "variant $1 not delivered"
}

check "a handle at a URL answering 404 does not stop a later mail with the same SHA-256 and the right URL"
variant "wrong url" "https://127.0.0.1:$MM_GATEWAY_PORT/m/nothere/nothing" "$SENT"
fetcher poison
[ "$(listed)" -eq 0 ] || mm_fail "mail with a 404 handle listed"
for _ in $(seq 20); do grep -q "download failed" "$OLOG" && break; sleep 0.5; done
grep -q "download failed" "$OLOG" || mm_fail "the 404 was never tried"
variant "right url" "$GOOD_URL" "$SENT"
t0=$SECONDS
for _ in $(seq 30); do listed >/dev/null; [ -f "$OCACHE/media/$SENT" ] && break; sleep 1; done
[ -f "$OCACHE/media/$SENT" ] || { tail -5 "$OLOG"; mm_fail "the right URL was never tried after the 404 of the same SHA-256"; }
mm_log "404 source failed; the other source of the same file downloaded in $((SECONDS - t0))s"

check "after RETR, DELE and QUIT the presented copies are removed at the next session"
[ "$(listed)" -eq 2 ] || mm_fail "both mails should be shown once the file is verified (shared by hash)"
ls "$OCACHE"/msg/*.eml >/dev/null 2>&1 || mm_fail "no presented file to clean up"
python3 - "$OPORT" "$MM_POP3_PASS" <<'PY' || mm_fail "RETR/DELE/QUIT through the fetcher"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=60)
p.user("bob"); p.pass_(sys.argv[2])
for i in (1, 2):
    p.retr(i)
    p.dele(i)
p.quit()
PY
[ "$(listed)" -eq 0 ] || mm_fail "deleted mail still listed"
left=$(ls "$OCACHE"/msg/ | grep -E '\.(eml|raw)$' || true)
[ -z "$left" ] || mm_fail "copies of deleted mail stayed: $left"
fetcher_stop
mm_log "no .eml or .raw left after DELE+QUIT and the next session"

# A loopback HTTPS server with its own key: /data/N serves N random bytes at
# about 1 MB/s; /slow/N promises N bytes and sends 2 bytes a second.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$MM_TMP/s.key" -out "$MM_TMP/s.crt" -days 1 \
  -subj /CN=127.0.0.1 >/dev/null 2>&1 || mm_fail "openssl req"
SPIN="sha256//$(openssl x509 -in "$MM_TMP/s.crt" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64 -w0)"
SPORT=$(mm_free_port) || mm_fail "no free port"
timeout 300 python3 - "$SPORT" "$MM_TMP/s.crt" "$MM_TMP/s.key" >"$MM_TMP/slow.log" 2>&1 <<'PY' &
import http.server, os, ssl, sys, time
port, crt, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        kind, n = self.path.split("/")[1], int(self.path.split("/")[2])
        print("GET", self.path, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        try:
            if kind == "slow":
                for _ in range(200):
                    self.wfile.write(b"xx"); self.wfile.flush(); time.sleep(1)
            else:
                for _ in range(n // 65536 + 1):
                    self.wfile.write(os.urandom(65536)[: max(0, min(65536, n))]); n -= 65536
                    self.wfile.flush(); time.sleep(0.06)
        except OSError:
            pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(crt, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
mm_register_pid $!
mm_wait_port "$SPORT" 20 || mm_fail "test HTTPS server did not start"

check "three parallel 3 MB downloads under a 4 MiB cache_quota: the cache never holds more"
clear_upstream
for i in 1 2 3; do
  variant "big $i" "https://127.0.0.1:$SPORT/data/3000000" "$(printf "b$i%.0s" $(seq 32))" 3000000 "$SPIN"
done
fetcher quota --set fetcher.cache_quota=4M --set fetcher.parallel=3 --set fetcher.max_per_host=3
listed >/dev/null
max=0
for _ in $(seq 100); do
  s=$(du -sb "$OCACHE/media" | cut -f1)
  [ "$s" -gt "$max" ] && max=$s
  sleep 0.1
done
fetcher_stop
[ "$max" -le $((4 * 1024 * 1024)) ] || mm_fail "cache media held $max bytes, over the 4 MiB quota"
grep -q "cache_quota full, waiting" "$OLOG" || { grep -v "debug: pop3\|session" "$OLOG" | tail -15; mm_fail "no download waited for room (max $max)"; }
mm_log "largest cache seen: $max bytes (quota 4194304)"

check "a server sending 2 bytes/s with parallel = 1 does not keep another host's media waiting"
clear_upstream
variant "slow" "https://localhost:$SPORT/slow/3000000" "$(printf 'c1%.0s' $(seq 32))" 3000000 "$SPIN"
fetcher slow --set fetcher.parallel=1 --set fetcher.min_rate=1
listed >/dev/null
for _ in $(seq 20); do grep -q "GET /slow" "$MM_TMP/slow.log" && break; sleep 0.5; done
grep -q "GET /slow" "$MM_TMP/slow.log" || mm_fail "the slow server was never asked"
variant "good" "$GOOD_URL" "$SENT"
t0=$SECONDS
for _ in $(seq 20); do listed >/dev/null; [ -f "$OCACHE/media/$SENT" ] && break; sleep 1; done
[ -f "$OCACHE/media/$SENT" ] || { tail -5 "$OLOG"; mm_fail "the slow server kept the only slot: other media never fetched"; }
grep -q "preempted" "$OLOG" || mm_fail "no preemption logged"
fetcher_stop
mm_log "other host's media verified $((SECONDS - t0))s after it was due (timeout 3s)"

echo "PASS: fetcher_abuse"
