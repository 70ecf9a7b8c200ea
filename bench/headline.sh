#!/usr/bin/env bash
# headline.sh - the headline benchmark: one video (200 MiB by default) mailed and
# read twice in one run, on one private Postfix + Dovecot:
#   (a) plain mail: swaks -> Postfix (no milter) -> Dovecot -> fetchmail from Dovecot
#   (b) MediaMail:  swaks -> Postfix + mm-milter -> Dovecot -> mm-fetcher -> fetchmail
#   (c) mmsend:     mmsend (detaches before SMTP) -> Postfix -> Dovecot -> mm-fetcher -> fetchmail
#   (d) filter:     swaks -> Postfix submission smtpd -> mm-milter's before-queue filter
#                   (smtpd_proxy_filter) -> after-filter smtpd -> Dovecot -> mm-fetcher -> fetchmail
#                   (smtpd_milters empty: the filter does the work)
# For each: send-to-readable wall time (swaks start to the attachment extracted
# and verified) and the bytes the mail server held: the peak of Postfix's
# queue_directory (du every 100 ms) and the Maildir after delivery. For (b) and
# (d) also the peak of mm-milter's own spool (store.dir/spool, du every 100 ms):
# MediaMail's scratch copy of the message on the sender's gateway, deleted at
# the end of each message - not the mail server's queue or mailbox, so it is a
# separate column and not in server_B.
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
spool=$MM_STORE/spool   # mm-milter's scratch copy of the message in flight (milter and filter)
[ -d "$spool" ] || mm_fail "no mm-milter spool dir $spool"

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
# from, and the sender (swaks; mmsend; filter = swaks to the submission smtpd
# whose smtpd_proxy_filter is mm-milter's before-queue filter).
run_case() {
  local name=$1 milter=$2 port=$3 sender=${4:-swaks} subject="Headline $1"
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = $milter"
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sleep 2
  local base before start end sbase
  base=$(du -sb "$queue" | cut -f1)
  echo "$base" >"$MM_TMP/peak-$name"
  sample_peak "$queue" "$MM_TMP/peak-$name" &
  local sampler=$!
  sbase=$(du -sb "$spool" | cut -f1)
  echo "$sbase" >"$MM_TMP/speak-$name"
  sample_peak "$spool" "$MM_TMP/speak-$name" &
  local ssampler=$!
  before=$(mm_count_messages bob)
  start=$(date +%s%N)
  if [ "$sender" = filter ]; then
    MM_SEND_PORT=$MM_SUBMIT_PORT mm_swaks_send alice@example.test bob@example.test "$subject" "The video." \
      "$MM_TMP/video.mp4" video/mp4
  elif [ "$sender" = mmsend ]; then
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
  kill "$sampler" "$ssampler" 2>/dev/null; wait "$sampler" "$ssampler" 2>/dev/null || true
  [ "$(sha256sum "$MM_TMP/back-$name.mp4" | cut -d' ' -f1)" = "$sha" ] || mm_fail "$name: video changed"
  local peak=$(($(cat "$MM_TMP/peak-$name") - base)) speak=$(($(cat "$MM_TMP/speak-$name") - sbase))
  eval "ms_$name=$(((end - start) / 1000000)) queue_$name=$peak maildir_$name=$maildir spool_$name=$speak"
  mm_info "$name: $(((end - start) / 1000000)) ms, queue peak +$peak B, Maildir $maildir B, mm-milter spool peak +$speak B"
  rm -f "$got" "$MM_TMP/back-$name.mp4"
}

mm_info "making a ${mib} MiB video with ffmpeg"
mm_make_video "$MM_TMP/video.mp4" "$mib"
size=$(stat -c %s "$MM_TMP/video.mp4")
sha=$(sha256sum "$MM_TMP/video.mp4" | cut -d' ' -f1)

run_case plain "" "$MM_POP3_PORT"
run_case mediamail "inet:127.0.0.1:$MM_MILTER_PORT" "$MM_FETCHER_PORT"
run_case mmsend "" "$MM_FETCHER_PORT" mmsend
run_case filter "" "$MM_FETCHER_PORT" filter
grep -q 'filter: detached 1' "$MM_TMP/mm-milter.log" || mm_fail "filter: mm-milter logged no detach"

server_plain=$((queue_plain + maildir_plain))
server_mm=$((queue_mediamail + maildir_mediamail))
server_send=$((queue_mmsend + maildir_mmsend))
server_filter=$((queue_filter + maildir_filter))
{
  echo "headline: video $size bytes (sha256 $sha), $(nproc) cores, $(date -u +%FT%TZ)"
  printf '%-10s %12s %16s %14s %14s %22s\n' case wall_ms queue_peak_B maildir_B server_B mm_spool_peak_B
  printf '%-10s %12d %16d %14d %14d %22s\n' plain "$ms_plain" "$queue_plain" "$maildir_plain" "$server_plain" -
  printf '%-10s %12d %16d %14d %14d %22d\n' mediamail "$ms_mediamail" "$queue_mediamail" "$maildir_mediamail" "$server_mm" \
    "$spool_mediamail"
  printf '%-10s %12d %16d %14d %14d %22s\n' mmsend "$ms_mmsend" "$queue_mmsend" "$maildir_mmsend" "$server_send" -
  printf '%-10s %12d %16d %14d %14d %22d\n' filter "$ms_filter" "$queue_filter" "$maildir_filter" "$server_filter" \
    "$spool_filter"
  echo "server_B = queue_peak_B + maildir_B: what the mail server held. mm_spool_peak_B: peak of mm-milter's spool" \
    "(store.dir/spool), MediaMail's scratch copy on the sender's gateway, deleted at the end of each message; not in server_B."
  python3 -c "import sys; a=[int(x) for x in sys.argv[1:]]; p=a[3]; q=a[7]; m=a[11]
print('time ratio vs plain: milter %.3f, mmsend %.3f, filter %.3f (goal <= 1.0)' % (a[0]/p, a[1]/p, a[2]/p))
print('server bytes ratio vs plain (queue peak + Maildir): milter %.2e, mmsend %.2e, filter %.2e; after delivery (Maildir): milter %.2e, mmsend %.2e, filter %.2e (goal <= 1e-4)' % (a[4]/q, a[5]/q, a[6]/q, a[8]/m, a[9]/m, a[10]/m))
print('mm-milter spool peak vs plain server bytes (not a server copy): milter %.2e, filter %.2e' % (a[12]/q, a[13]/q))" \
    "$ms_mediamail" "$ms_mmsend" "$ms_filter" "$ms_plain" "$server_mm" "$server_send" "$server_filter" "$server_plain" \
    "$maildir_mediamail" "$maildir_mmsend" "$maildir_filter" "$maildir_plain" "$spool_mediamail" "$spool_filter"
} | tee "$out"
