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
# Each case starts after `sync`, so that none pays for the writeback of the one
# before it. MM_HEADLINE_ROUNDS (default 1) repeats the cases on the same stack,
# every other round in reverse order; the summary gives each round's ratios and
# their median. MM_HEADLINE_CASES picks cases (default: plain mediamail mmsend
# filter; plain is always run, first in the forward rounds).
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
  local name=$1 milter=$2 port=$3 sender=${4:-swaks} subject="Headline $1 round $round"
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = $milter"
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sync   # the previous case's dirty pages are not this one's to write
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
  # Every case sends a video no cache has seen (the fetcher's media and the
  # sender's store are keyed by SHA-256): each pays for its upload and download.
  mkdir -p "$MM_TMP/case"
  mm_unique_copy "$MM_TMP/video.mp4" "$MM_TMP/case/video.mp4"
  local sha
  sha=$(sha256sum "$MM_TMP/case/video.mp4" | cut -d' ' -f1)
  sync
  before=$(mm_count_messages bob)
  start=$(date +%s%N)
  if [ "$sender" = filter ]; then
    MM_SEND_PORT=$MM_SUBMIT_PORT mm_swaks_send alice@example.test bob@example.test "$subject" "The video." \
      "$MM_TMP/case/video.mp4" video/mp4
  elif [ "$sender" = mmsend ]; then
    "$(mm_bin mmsend)" -c "$MM_CONF" --set "mmsend.smtp=smtp://127.0.0.1:$MM_SMTP_PORT" --insecure -q \
      --from alice@example.test --to bob@example.test --subject "$subject" --body "The video." \
      --attach "$MM_TMP/case/video.mp4" >"$MM_TMP/mmsend.out" 2>&1 || mm_fail "mmsend: $(tail -3 "$MM_TMP/mmsend.out")"
  else
    mm_swaks_send alice@example.test bob@example.test "$subject" "The video." "$MM_TMP/case/video.mp4" video/mp4
  fi
  local sent delivered fetched
  sent=$(date +%s%N)
  mm_wait_delivered bob $((before + 1)) 1800 || mm_fail "$name: not delivered"
  delivered=$(date +%s%N)
  local maildir
  maildir=$(mm_maildir_bytes bob)
  MM_FETCHER_PORT=$port mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-$name"
  fetched=$(date +%s%N)
  local got
  got=$(mm_find_by_subject "$MM_TMP/fetched-$name" "$subject")
  [ -n "$got" ] || mm_fail "$name: fetchmail got nothing"
  mm_extract_attachment "$got" video.mp4 "$MM_TMP/back-$name.mp4"
  end=$(date +%s%N)
  # Where the time went: send, delivery (seen by a 200 ms poll), fetchmail, extraction.
  echo "$round $name $(((sent - start) / 1000000)) $(((delivered - sent) / 1000000))" \
    "$(((fetched - delivered) / 1000000)) $(((end - fetched) / 1000000))" >>"$MM_TMP/phases"
  kill "$sampler" "$ssampler" 2>/dev/null; wait "$sampler" "$ssampler" 2>/dev/null || true
  [ "$(sha256sum "$MM_TMP/back-$name.mp4" | cut -d' ' -f1)" = "$sha" ] || mm_fail "$name: video changed"
  local peak=$(($(cat "$MM_TMP/peak-$name") - base)) speak=$(($(cat "$MM_TMP/speak-$name") - sbase))
  echo "$round $name $(((end - start) / 1000000)) $peak $maildir $speak" >>"$MM_TMP/results"
  mm_info "round $round $name: $(((end - start) / 1000000)) ms, queue peak +$peak B, Maildir $maildir B, mm-milter spool peak +$speak B"
  rm -f "$got" "$MM_TMP/back-$name.mp4"
}

mm_info "making a ${mib} MiB video with ffmpeg"
mm_make_video "$MM_TMP/video.mp4" "$mib"
size=$(($(stat -c %s "$MM_TMP/video.mp4") + 32))

cases=${MM_HEADLINE_CASES:-plain mediamail mmsend filter}
rounds=${MM_HEADLINE_ROUNDS:-1}
one_case() {
  case $1 in
    plain) run_case plain "" "$MM_POP3_PORT" ;;
    mediamail) run_case mediamail "inet:127.0.0.1:$MM_MILTER_PORT" "$MM_FETCHER_PORT" ;;
    mmsend) run_case mmsend "" "$MM_FETCHER_PORT" mmsend ;;
    filter) run_case filter "" "$MM_FETCHER_PORT" filter ;;
    *) mm_fail "unknown case $1 in MM_HEADLINE_CASES" ;;
  esac
}
others=$(echo "$cases" | tr ' ' '\n' | grep -vx plain | tr '\n' ' ')
: >"$MM_TMP/results"
: >"$MM_TMP/phases"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="plain $others"; else order="$(echo "$others" | tr ' ' '\n' | tac | tr '\n' ' ') plain"; fi
  for c in $order; do one_case "$c"; done
done
case " $cases " in *" filter "*) grep -q 'filter: detached 1' "$MM_TMP/mm-milter.log" || mm_fail "filter: mm-milter logged no detach" ;; esac

{
  echo "headline: video $size bytes (a new SHA-256 for every case), $(nproc) cores, $rounds round(s), $(date -u +%FT%TZ)"
  python3 - "$MM_TMP/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
res = {}   # (round, case) -> (ms, queue, maildir, spool)
for r, name, ms, q, m, sp in rows:
    res[(int(r), name)] = (int(ms), int(q), int(m), int(sp))
cases = [c for c in ["plain", "mediamail", "mmsend", "filter"] if any(k[1] == c for k in res)]
rounds = sorted({k[0] for k in res})
print("%-6s %-10s %9s %13s %11s %11s %15s %11s %13s" % ("round", "case", "wall_ms", "queue_peak_B", "maildir_B", "server_B",
      "mm_spool_peak_B", "time_ratio", "bytes_ratio"))
ratios = {c: [] for c in cases}
bytes_ratios = {c: [] for c in cases}
for r in rounds:
    p = res[(r, "plain")]
    for c in cases:
        ms, q, m, sp = res[(r, c)]
        tr, br = ms / p[0], (q + m) / (p[1] + p[2])
        ratios[c].append(tr)
        bytes_ratios[c].append(br)
        spool = "-" if c in ("plain", "mmsend") else str(sp)
        print("%-6d %-10s %9d %13d %11d %11d %15s %11.3f %13.2e" % (r, c, ms, q, m, q + m, spool, tr, br))
print("server_B = queue_peak_B + maildir_B: what the mail server held. mm_spool_peak_B: peak of mm-milter's spool "
      "(store.dir/spool), MediaMail's scratch copy on the sender's gateway, deleted at the end of each message; not in server_B.")
for c in cases:
    if c == "plain":
        continue
    print("%s: time ratio vs plain median %.3f (rounds: %s; goal <= 1.0), server bytes ratio median %.2e (goal <= 1e-4)"
          % (c, statistics.median(ratios[c]), " ".join("%.3f" % x for x in ratios[c]), statistics.median(bytes_ratios[c])))
PY
  echo "phases (ms): round case send deliver fetchmail extract"
  sed 's/^/  /' "$MM_TMP/phases"
} | tee "$out"
