#!/usr/bin/env bash
# headline.sh - the headline benchmark: one video (200 MiB by default) mailed and
# read twice in one run, on one private Postfix + Dovecot:
#   (a) plain mail: swaks -> Postfix (no milter) -> Dovecot -> fetchmail from Dovecot
#   (b) MediaMail:  swaks -> Postfix + mm-milter -> Dovecot -> mm-fetcher -> fetchmail
#   (c) mmsend:     mmsend (detaches before SMTP) -> Postfix -> Dovecot -> mm-fetcher -> fetchmail
# For each: send-to-readable wall time (swaks start to the attachment extracted
# and verified) and the bytes the mail server held: the peak of Postfix's
# queue_directory (du every 100 ms) and the Maildir after delivery.
#
#   MM_BUILD_DIR=build bench/headline.sh [MIB]      (root; results also in $MM_BENCH_OUT)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_SOURCE_DIR=$here MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
mib=${1:-200}
out=${MM_BENCH_OUT:-/tmp/mm-headline.txt}
. "$here/tests/integration/lib/mailstack.sh"
. "$here/tests/integration/lib/mediamail.sh"

mm_tmpdir_init
mm_mediamail_start
queue=$MM_TMP/postfix-queue

# Peak bytes under DIR while it runs, sampled every 100 ms, written to FILE.
sample_peak() {
  local dir=$1 file=$2 peak=0 b
  while :; do
    b=$(du -sb "$dir" 2>/dev/null | cut -f1 || echo 0)
    [ "${b:-0}" -gt "$peak" ] && peak=$b && echo "$peak" >"$file"
    sleep 0.1
  done
}

# One run: NAME, the milter setting for Postfix, the POP3 port fetchmail reads
# from, and the sender (swaks or mmsend).
run_case() {
  local name=$1 milter=$2 port=$3 sender=${4:-swaks} subject="Headline $1"
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = $milter"
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sleep 2
  local base before start end
  base=$(du -sb "$queue" | cut -f1)
  echo "$base" >"$MM_TMP/peak-$name"
  sample_peak "$queue" "$MM_TMP/peak-$name" &
  local sampler=$!
  before=$(mm_count_messages bob)
  start=$(date +%s%N)
  if [ "$sender" = mmsend ]; then
    "$(mm_bin mmsend)" -c "$MM_CONF" --set "mmsend.smtp=smtp://127.0.0.1:$MM_SMTP_PORT" --insecure -q \
      --from alice@example.test --to bob@example.test --subject "$subject" --body "The video." \
      --attach "$MM_TMP/video.mp4" >"$MM_TMP/mmsend.out" 2>&1 || mm_fail "mmsend: $(tail -3 "$MM_TMP/mmsend.out")"
  else
    mm_swaks_send alice@example.test bob@example.test "$subject" "The video." "$MM_TMP/video.mp4" video/mp4
  fi
  mm_wait_delivered bob $((before + 1)) 1800 || mm_fail "$name: not delivered"
  local maildir
  maildir=$(mm_maildir_bytes bob)
  MM_FETCHER_PORT=$port mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-$name"
  local got
  got=$(mm_find_by_subject "$MM_TMP/fetched-$name" "$subject")
  [ -n "$got" ] || mm_fail "$name: fetchmail got nothing"
  mm_extract_attachment "$got" video.mp4 "$MM_TMP/back-$name.mp4"
  end=$(date +%s%N)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  [ "$(sha256sum "$MM_TMP/back-$name.mp4" | cut -d' ' -f1)" = "$sha" ] || mm_fail "$name: video changed"
  local peak=$(($(cat "$MM_TMP/peak-$name") - base))
  eval "ms_$name=$(((end - start) / 1000000)) queue_$name=$peak maildir_$name=$maildir"
  mm_info "$name: $(((end - start) / 1000000)) ms, queue peak +$peak B, Maildir $maildir B"
  rm -f "$got" "$MM_TMP/back-$name.mp4"
}

mm_info "making a ${mib} MiB video with ffmpeg"
mm_make_video "$MM_TMP/video.mp4" "$mib"
size=$(stat -c %s "$MM_TMP/video.mp4")
sha=$(sha256sum "$MM_TMP/video.mp4" | cut -d' ' -f1)

run_case plain "" "$MM_POP3_PORT"
run_case mediamail "inet:127.0.0.1:$MM_MILTER_PORT" "$MM_FETCHER_PORT"
run_case mmsend "" "$MM_FETCHER_PORT" mmsend

server_plain=$((queue_plain + maildir_plain))
server_mm=$((queue_mediamail + maildir_mediamail))
server_send=$((queue_mmsend + maildir_mmsend))
{
  echo "headline: video $size bytes (sha256 $sha), $(nproc) cores, $(date -u +%FT%TZ)"
  printf '%-10s %12s %16s %14s %14s\n' case wall_ms queue_peak_B maildir_B server_B
  printf '%-10s %12d %16d %14d %14d\n' plain "$ms_plain" "$queue_plain" "$maildir_plain" "$server_plain"
  printf '%-10s %12d %16d %14d %14d\n' mediamail "$ms_mediamail" "$queue_mediamail" "$maildir_mediamail" "$server_mm"
  printf '%-10s %12d %16d %14d %14d\n' mmsend "$ms_mmsend" "$queue_mmsend" "$maildir_mmsend" "$server_send"
  python3 -c "import sys; a=[int(x) for x in sys.argv[1:]]; print('time ratio vs plain: milter %.3f, mmsend %.3f (goal <= 1.0)' % (a[0]/a[2], a[1]/a[2])); print('server bytes ratio vs plain (queue peak + Maildir): milter %.2e, mmsend %.2e; after delivery (Maildir): milter %.2e, mmsend %.2e (goal <= 1e-4)' % (a[3]/a[5], a[4]/a[5], a[6]/a[8], a[7]/a[8]))" \
    "$ms_mediamail" "$ms_mmsend" "$ms_plain" "$server_mm" "$server_send" "$server_plain" "$maildir_mediamail" "$maildir_mmsend" "$maildir_plain"
} | tee "$out"
