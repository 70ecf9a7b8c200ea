#!/usr/bin/env bash
# imap_replace.sh - the IMAP mailbox agent (mm-fetcher --imap) against plain mail,
# side by side: one mail with a VIDEO_MIB video, from the start of its SMTP
# submission to the moment an IMAP client (Python imaplib) has read the whole mail
# with the video in it.
#  plain:      the mail with the video inside, submitted to a Postfix smtpd without
#              the milter, delivered to Dovecot, read over IMAP;
#  mediamail:  the same mail submitted to the smtpd with mm-milter (the video goes
#              to mm-gateway, a small mail to Dovecot); the agent, idling, fetches
#              the small mail, downloads and verifies the video, rebuilds the mail,
#              APPENDs it, UID EXPUNGEs the small one; the client reads the rebuilt
#              mail. Its phases are taken from the agent's log.
# Both read the same octets of attachment (checked by SHA-256 after the timing).
# Plain IMAP and plain HTTP-over-TLS on loopback; one machine, so the network is free
# and what is measured is copies and CPU.
#
#   bench/imap_replace.sh [VIDEO_MIB] [REPS]     (defaults 200 1)
# Env: MM_BUILD_DIR (default ./build). Needs root (private Postfix and Dovecot).
set -euo pipefail

VIDEO_MIB=${1:-200}
REPS=${2:-1}
MM_SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
MM_BUILD_DIR=${MM_BUILD_DIR:-$MM_SOURCE_DIR/build}
export MM_SOURCE_DIR MM_BUILD_DIR
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
. "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_mediamail_start_servers
mm_dovecot_imap_enable
T=$MM_TMP

# A second smtpd on the same Postfix, without the milter: plain delivery.
PLAIN_PORT=$(mm_free_port)
echo "127.0.0.1:$PLAIN_PORT inet n - n - - smtpd -o smtpd_milters= -o non_smtpd_milters=" >>"$MM_POSTFIX_DIR/master.cf"
postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
mm_wait_port "$PLAIN_PORT" 20 || mm_fail "plain smtpd not listening"

echo "$MM_POP3_PASS" >"$T/imap.pass"
chmod 600 "$T/imap.pass"
mm_start_program mm-fetcher --imap --set "fetcher.imap=imap://127.0.0.1:$MM_IMAP_PORT" \
  --set fetcher.imap_user=bob --set "fetcher.imap_password_file=$T/imap.pass" --set fetcher.login_wait=60s
mm_wait_for 20 grep -q "imap: logged in" "$T/mm-fetcher.log" || mm_fail "agent did not log in"

# read_when PORT SUBJECT WANT_RESTORED OUT: wait for the mail, then read it whole;
# prints the seconds (since the epoch) when it was read.
cat >"$T/reader.py" <<'PY'
import imaplib, sys, time
port, subject, want_restored, out = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4]
m = imaplib.IMAP4("127.0.0.1", port, timeout=600)
m.login("bob", "secret")
while True:
    m.select("INBOX")
    typ, data = m.uid("SEARCH", None, "SUBJECT", '"%s"' % subject, *(["HEADER", "X-Media-Restored", '""'] if want_restored else []))
    uids = data[0].split()
    if uids:
        break
    time.sleep(0.05)
typ, data = m.uid("FETCH", uids[-1], "(BODY.PEEK[])")
open(out, "wb").write(data[0][1])
print("%.3f" % time.time())
m.logout()
PY

mm_random_mp4 "$T/video.mp4" $((VIDEO_MIB * 1048576))

run_one() {   # KIND PORT REP
  local kind=$1 port=$2 rep=$3 subject="bench $1 $3" t0 t1 restored=0
  [ "$kind" = mediamail ] && restored=1
  mm_unique_copy "$T/video.mp4" "$T/v.mp4"   # a new SHA-256: nothing cached anywhere
  mm_make_media_mail "$T/v.mp4" "$T/mail.eml" video/mp4 "$subject"
  local want
  want=$(sha256sum "$T/v.mp4" | cut -c1-64)
  t0=$(date +%s.%N)
  MM_SEND_PORT=$port mm_smtp_send_big alice@example.test bob@example.test "$T/mail.eml"
  t1=$(python3 "$T/reader.py" "$MM_IMAP_PORT" "$subject" "$restored" "$T/read.eml")
  mm_extract_attachment "$T/read.eml" v.mp4 "$T/got.mp4"
  [ "$(sha256sum "$T/got.mp4" | cut -c1-64)" = "$want" ] || mm_fail "$kind: attachment differs"
  echo "$kind $rep $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') $(stat -c %s "$T/read.eml")"
  rm -f "$T/read.eml" "$T/got.mp4"
  [ "$kind" = mediamail ] && phases "$t0" "$t1"
  return 0
}

# phases T0 T1: where the time of one mediamail run went, from the logs (seconds after T0).
phases() {
  python3 - "$1" "$2" "$T/mm-milter.log" "$T/mm-fetcher.log" <<'PY'
import datetime, re, sys
t0, t1 = float(sys.argv[1]), float(sys.argv[2])
marks = [("milter: media detached, small mail queued", sys.argv[3], r"detached 1,"),
         ("agent: small mail found (IDLE woke it)", sys.argv[4], r"imap: mail with location parts"),
         ("agent: video verified", sys.argv[4], r"verified, \d+ bytes"),
         ("agent: mail rebuilt (while the video arrived)", sys.argv[4], r"media put back message_id"),
         ("agent: rebuilt mail APPENDed", sys.argv[4], r"rebuilt mail appended"),
         ("agent: original UID EXPUNGEd", sys.argv[4], r"media put back in place")]
out = []
for name, path, pat in marks:
    last = None
    for line in open(path, errors="replace"):
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
        if m and re.search(pat, line):
            t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
            if t >= t0:
                last = t
    out.append((last, name))
for t, name in sorted(out, key=lambda x: x[0] or 0):
    print("    %6s s  %s" % ("%.2f" % (t - t0) if t else "-", name))
print("    %6.2f s  client: whole rebuilt mail read" % (t1 - t0))
PY
}

echo "video ${VIDEO_MIB} MiB ($(stat -c %s "$T/video.mp4") octets, random bytes behind an MP4 ftyp box; each run a fresh copy)"
echo "kind rep seconds_to_readable octets_read"
for rep in $(seq 1 "$REPS"); do
  run_one plain "$PLAIN_PORT" "$rep"
  run_one mediamail "$MM_SMTP_PORT" "$rep"
done
echo "mailbox bytes after the run: $(mm_maildir_bytes bob)"
