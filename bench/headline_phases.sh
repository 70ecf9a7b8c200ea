#!/usr/bin/env bash
# headline_phases.sh - where the headline's time goes. The same video is mailed
# by swaks straight to Postfix (plain mail) and through mm-milter's before-queue
# filter, alternating, ROUNDS times each, and every phase is timed on its own:
#   send      swaks's whole SMTP session (it base64-encodes the file in Perl)
#   deliver   from swaks's exit until the message is in the Maildir
#   login     POP3 USER/PASS until +OK: for MediaMail, mm-fetcher downloading,
#             verifying and re-inserting the video before it lists the mail
#   retr      RETR of the message, then DELE and QUIT (as fetchmail does)
# The POP3 client is Python's poplib, straight from Dovecot for plain mail and
# through mm-fetcher for MediaMail. Each round starts after `sync`.
#
#   MM_BUILD_DIR=build bench/headline_phases.sh [MIB] [ROUNDS]     (root)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_SOURCE_DIR=$here MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
mib=${1:-200}
rounds=${2:-3}
. "$here/tests/integration/lib/mailstack.sh"
. "$here/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_mediamail_start
postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters ="   # plain mail: no milter on port 25's smtpd
postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
sleep 2
mm_info "making a ${mib} MiB video with ffmpeg"
mm_make_video "$MM_TMP/video.mp4" "$mib"

ms() { echo $(($(date +%s%N) / 1000000)); }
: >"$MM_TMP/phases"
for round in $(seq 1 "$rounds"); do
  for mode in plain filter; do
    if [ "$mode" = plain ]; then send_port=$MM_SMTP_PORT pop_port=$MM_POP3_PORT; else
      send_port=$MM_SUBMIT_PORT pop_port=$MM_FETCHER_PORT; fi
    # A video no cache has seen (see mm_unique_copy): each send pays for its download.
    mkdir -p "$MM_TMP/case"
    mm_unique_copy "$MM_TMP/video.mp4" "$MM_TMP/case/video.mp4"
    sync
    sleep 1
    before=$(mm_count_messages bob)
    t0=$(ms)
    MM_SEND_PORT=$send_port mm_swaks_send alice@example.test bob@example.test "Phases $mode $round" "The video." \
      "$MM_TMP/case/video.mp4" video/mp4
    t1=$(ms)
    mm_wait_delivered bob $((before + 1)) 600 || mm_fail "$mode: not delivered"
    t2=$(ms)
    read -r login retr octets < <(python3 - "$pop_port" "$MM_POP3_PASS" <<'EOF'
import poplib, sys, time
t0 = time.monotonic()
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=600)
p.user("bob")
p.pass_(sys.argv[2])
t1 = time.monotonic()
n = len(p.list()[1])
octets = p.retr(n)[2]
p.dele(n)
p.quit()
print(int((t1 - t0) * 1000), int((time.monotonic() - t1) * 1000), octets)
EOF
    )
    echo "$round $mode $((t1 - t0)) $((t2 - t1)) $login $retr $octets" >>"$MM_TMP/phases"
    mm_info "round $round $mode: send $((t1 - t0)) ms, deliver $((t2 - t1)) ms, login $login ms, retr $retr ms ($octets octets)"
  done
done

python3 - "$MM_TMP/phases" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("%-6s %-7s %8s %10s %9s %8s %9s %12s" % ("round", "path", "send_ms", "deliver_ms", "login_ms", "retr_ms", "total_ms",
                                              "retr_octets"))
tot = {"plain": [], "filter": []}
for r, mode, send, deliver, login, retr, octets in rows:
    t = int(send) + int(deliver) + int(login) + int(retr)
    tot[mode].append((int(send), int(deliver), int(login), int(retr), t))
    print("%-6s %-7s %8s %10s %9s %8s %9d %12s" % (r, mode, send, deliver, login, retr, t, octets))
names = ["send", "deliver", "login", "retr", "total"]
for mode in ("plain", "filter"):
    med = [statistics.median(x[i] for x in tot[mode]) for i in range(5)]
    print("median %-7s " % mode + ", ".join("%s %d ms" % (n, m) for n, m in zip(names, med)))
EOF
