#!/usr/bin/env bash
# demo.sh - the MediaMail loop on this machine, with real mail software on
# loopback: a video is mailed with swaks to Postfix's submission service, whose
# before-queue filter is mm-milter (docs/postfix.md), so neither Postfix's queue
# nor Dovecot ever holds the video; fetchmail reads the mailbox through mm-fetcher,
# which pulls the video peer to peer from mm-gateway over HTTPS and puts it back.
# Installs what is needed and builds first. Run as root on Debian 12.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_SOURCE_DIR=$here MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
bash "$here/scripts/build.sh"

. "$here/tests/integration/lib/mailstack.sh"
. "$here/tests/integration/lib/mediamail.sh"
mm_tmpdir_init
echo
echo "== Starting mm-gateway, mm-milter, Postfix, Dovecot and mm-fetcher on 127.0.0.1"
mm_mediamail_start
echo "== Making a video with ffmpeg"
mm_make_video "$MM_TMP/holiday.mp4" "${MM_DEMO_MIB:-24}"
size=$(stat -c %s "$MM_TMP/holiday.mp4")
echo "== Mailing it with swaks (submission port, through mm-milter's filter), reading the mailbox with fetchmail through mm-fetcher"
MM_SEND_PORT=$MM_SUBMIT_PORT mm_video_loop "$MM_TMP/holiday.mp4" "Holiday video"

printf '\n%-34s %s\n' "video sent, SHA-256:" "$MM_SENT_SHA"
printf '%-34s %s\n' "video received, SHA-256:" "$MM_RECV_SHA"
printf '%-34s %s bytes\n' "video size:" "$size"
printf '%-34s %s bytes\n' "Postfix's queue, most while sent:" "$MM_QUEUE_PEAK"
printf '%-34s %s bytes\n' "stored by the mail server:" "$MM_STORED_BYTES"
printf '%-34s %s.%03d s\n' "send to readable:" $((MM_LOOP_MS / 1000)) $((MM_LOOP_MS % 1000))
if [ "$MM_SENT_SHA" = "$MM_RECV_SHA" ]; then
  echo "RESULT: the video arrived byte-identical; the mail server held at most $MM_QUEUE_PEAK bytes in its queue and stored $MM_STORED_BYTES."
else
  echo "RESULT: FAILED, the received video differs" >&2
  exit 1
fi
