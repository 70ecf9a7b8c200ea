#!/usr/bin/env bash
# faults-load.test.sh - concurrency, with the real programs: (d) 50 POP3 sessions
# at once through mm-fetcher, each reading the whole mailbox (a media mail and
# plain mails) and checking every byte; (e) 100 simultaneous downloads of one
# item from mm-gateway with curl, each SHA-256-verified.
set -euo pipefail
: "${MM_SOURCE_DIR:?}" "${MM_BUILD_DIR:?}"
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

SESSIONS=50
DOWNLOADS=100

mm_tmpdir_init
mm_mediamail_start_servers
# Dovecot allows 10 connections per user and IP by default; the fetcher opens
# one upstream connection per client session.
printf '\nmail_max_userip_connections = 100\n' >>"$MM_DOVECOT_CONF"
doveadm -c "$MM_DOVECOT_CONF" reload
sleep 1
# The fetcher's session cap (default 32) would refuse some of the 50 sessions
# by design; this test is about correctness under load, so it is raised.
mm_fetcher_start --set fetcher.max_sessions=64
mm_log "gateway, milter, Postfix, Dovecot (100 sessions per user) and fetcher (64) up"

mm_random_mp4 "$MM_TMP/clip.mp4" $((4 * 1048576))
sha=$(sha256sum "$MM_TMP/clip.mp4" | cut -d' ' -f1)
mm_swaks_send alice@example.test bob@example.test "Load clip" "the clip" "$MM_TMP/clip.mp4" video/mp4
for i in 1 2; do
  mm_swaks_send carol@example.test bob@example.test "Load plain $i" "plain body $i"
done
mm_wait_delivered bob 3 120 || mm_fail "the mails were not delivered"
cp "$(find "$MM_MAIL_DIR/bob/Maildir" -type f -exec grep -l '^X-Media-Handles:' {} + | head -n1)" "$MM_TMP/stored.eml"

# ---- (d) 50 concurrent POP3 sessions ---------------------------------------------
# The fetcher holds the media mail back until its download is verified; wait for
# that first, so that every session must see the same three messages.
python3 - "$MM_FETCHER_PORT" "$MM_POP3_PASS" >"$MM_TMP/warm.out" 2>&1 <<'PY' || mm_fail "(d) the media mail never became visible: $(cat "$MM_TMP/warm.out")"
import poplib, sys, time
for _ in range(120):
    p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=120)
    p.user("bob"); p.pass_(sys.argv[2])
    n = p.stat()[0]
    p.quit()
    if n == 3:
        sys.exit(0)
    time.sleep(1)
print("STAT stayed at", n); sys.exit(1)
PY
python3 - "$MM_FETCHER_PORT" "$MM_POP3_PASS" "$SESSIONS" "$sha" >"$MM_TMP/d.out" 2>&1 <<'PY' || mm_fail "(d): $(tail -20 "$MM_TMP/d.out")"
import email, email.policy, hashlib, poplib, sys, threading
port, password, n, sha = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
results, errors = [None] * n, []
start = threading.Barrier(n)

def session(i):
    try:
        start.wait(60)   # all log in at the same moment
        p = poplib.POP3("127.0.0.1", port, timeout=300)
        p.user("bob"); p.pass_(password)
        count, _ = p.stat()
        uidl = p.uidl()[1]
        msgs = [b"\r\n".join(p.retr(k)[1]) for k in range(1, count + 1)]
        p.quit()   # no DELE: every session sees the same mailbox
        seen = set()
        for m in msgs:
            msg = email.message_from_bytes(m, policy=email.policy.default)
            seen.add(str(msg["Subject"]))
            for part in msg.walk():
                if part.get_filename() == "clip.mp4":
                    got = hashlib.sha256(part.get_payload(decode=True)).hexdigest()
                    if got != sha:
                        raise AssertionError("clip sha %s" % got)
                    seen.add("clip-ok")
        results[i] = (count, tuple(uidl), tuple(hashlib.sha256(m).hexdigest() for m in msgs), frozenset(seen))
    except Exception as e:
        errors.append("session %d: %r" % (i, e))

threads = [threading.Thread(target=session, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    print("\n".join(errors)); sys.exit(1)
want = {"Load clip", "Load plain 1", "Load plain 2", "clip-ok"}
if results[0][0] != 3 or results[0][3] != want:
    print("session 0 saw", results[0]); sys.exit(1)
bad = [i for i, r in enumerate(results) if r != results[0]]
if bad:
    print("sessions disagree: %d of %d, e.g. session %d saw %r" % (len(bad), n, bad[0], results[bad[0]][:2])); sys.exit(1)
print("all %d sessions: 3 messages, identical bytes, clip verified" % n)
PY
mm_log "(d) $(cat "$MM_TMP/d.out")"
[ "$(mm_count_messages bob)" -eq 3 ] || mm_fail "(d) the mailbox changed"

# ---- (e) 100 concurrent downloads from the gateway ------------------------------
# The url may be split into RFC 2231 sections (url*0, url*1, ...): let Python's
# email package put it back together.
url=$(python3 - "$MM_TMP/stored.eml" <<'PY'
import email, email.utils, sys
msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
for part in msg.walk():
    if part["X-Media-Handle"]:
        print(email.utils.collapse_rfc2231_value(part.get_param("url", header="X-Media-Handle")))
        break
PY
)
[ -n "$url" ] || mm_fail "no url in the stored handle"
mkdir -p "$MM_TMP/dl"
seq 1 "$DOWNLOADS" | xargs -P "$DOWNLOADS" -I{} \
  curl -sS -k --max-time 300 -o "$MM_TMP/dl/{}" -w '%{http_code}\n' "$url" >"$MM_TMP/codes" 2>"$MM_TMP/curl.err" ||
  mm_fail "(e) a curl failed: $(head -3 "$MM_TMP/curl.err")"
ok200=$(grep -c '^200$' "$MM_TMP/codes" || true)
[ "$ok200" -eq "$DOWNLOADS" ] || mm_fail "(e) only $ok200 of $DOWNLOADS answers were 200: $(sort "$MM_TMP/codes" | uniq -c | tr '\n' ' ')"
good=$(cd "$MM_TMP/dl" && sha256sum -- * | awk -v s="$sha" '$1 == s' | wc -l)
[ "$good" -eq "$DOWNLOADS" ] || mm_fail "(e) only $good of $DOWNLOADS downloads verify"
mm_log "(e) $DOWNLOADS simultaneous curl downloads of 4 MiB: all 200, all sha256 $sha"

echo "faults-load: 2 cases passed"
