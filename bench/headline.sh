#!/usr/bin/env bash
# headline.sh - the headline benchmark: one video (200 MiB by default) mailed and
# read twice in one run, on one private Postfix + Dovecot:
#   (a) plain mail: swaks -> Postfix (no milter) -> Dovecot -> POP3 client straight from Dovecot
#   (b) MediaMail:  swaks -> Postfix + mm-milter -> Dovecot -> mm-fetcher -> POP3 client
#   (c) mmsend:     mmsend (detaches before SMTP) -> Postfix -> Dovecot -> mm-fetcher -> POP3 client
#   (d) filter:     swaks -> Postfix submission smtpd -> mm-milter's before-queue filter
#                   (smtpd_proxy_filter) -> after-filter smtpd -> Dovecot -> mm-fetcher -> POP3 client
#                   (smtpd_milters empty: the filter does the work)
#   (e) stream:     as (d), read through a second mm-fetcher with fetcher.stream = true
#                   (the mail is listed once its video's first segment checks out and
#                   sent while the rest downloads)
# Each case is read by every POP3 client of MM_HEADLINE_CLIENTS (default
# "fetchmail curl", each with a mail of its own): fetchmail delivers to an MDA
# line by line, curl saves RETR's answer as it comes. Ratios compare the same
# client on both paths.
# For each: send-to-readable wall time (swaks start to the attachment extracted
# and verified; also to the message in the client, before the extraction) and
# the bytes the mail server held: the peak of Postfix's
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
# filter; also stream; plain is always run, first in the forward rounds).
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
# Case (e)'s fetcher: the same upstream, its own port and cache.
STREAM_PORT=$(mm_free_port)
"$(mm_bin mm-fetcher)" -c "$MM_CONF" --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT" \
  --set "fetcher.listen=127.0.0.1:$STREAM_PORT" --set "fetcher.cache_dir=$MM_TMP/fetcher-cache-stream" \
  --set fetcher.stream=true >>"$MM_TMP/mm-fetcher-stream.log" 2>&1 &
mm_register_pid $!
mm_wait_port "$STREAM_PORT" 20 || mm_fail "the streaming mm-fetcher did not start: $(tail -5 "$MM_TMP/mm-fetcher-stream.log")"
queue=$MM_TMP/postfix-queue
spool=$MM_STORE/spool   # mm-milter's scratch copy of the message in flight (milter and filter)
[ -d "$spool" ] || mm_fail "no mm-milter spool dir $spool"

# Read USER's only message from the POP3 server on PORT with curl into OUTDIR,
# then delete it (DELE outside the timed part is the caller's: mm_curl_dele).
mm_curl_retr() {
  local user=$1 port=$2 outdir=$3
  mkdir -p "$outdir"
  curl -sS --max-time 1800 -u "$user:$MM_POP3_PASS" "pop3://127.0.0.1:$port/1" -o "$outdir/curl.eml" ||
    mm_fail "curl RETR from port $port failed"
}
mm_curl_dele() {
  curl -sS --max-time 60 -u "$1:$MM_POP3_PASS" -X DELE -I "pop3://127.0.0.1:$2/1" >/dev/null ||
    mm_fail "curl DELE on port $2 failed"
}

# One run: NAME, the milter setting for Postfix, the POP3 port the client reads
# from, the sender (swaks; mmsend; filter = swaks to the submission smtpd
# whose smtpd_proxy_filter is mm-milter's before-queue filter) and the client.
run_case() {
  local name=$1 milter=$2 port=$3 sender=$4 client=$5 subject="Headline $1 $5 round $round"
  postconf -c "$MM_POSTFIX_DIR" -e "smtpd_milters = $milter"
  postfix -c "$MM_POSTFIX_DIR" reload >/dev/null 2>&1
  sync   # the previous case's dirty pages are not this one's to write
  sleep 2
  local base before start end sbase
  base=$(du -sb "$queue" | cut -f1)
  echo "$base" >"$MM_TMP/peak-$name"
  mm_sample_peak "$queue" "$MM_TMP/peak-$name" &
  local sampler=$!
  sbase=$(du -sb "$spool" | cut -f1)
  echo "$sbase" >"$MM_TMP/speak-$name"
  mm_sample_peak "$spool" "$MM_TMP/speak-$name" &
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
  rm -rf "$MM_TMP/fetched-$name"
  if [ "$client" = curl ]; then
    mm_curl_retr bob "$port" "$MM_TMP/fetched-$name"
  else
    MM_FETCHER_PORT=$port mm_fetchmail_via_fetcher bob "$MM_TMP/fetched-$name"
  fi
  fetched=$(date +%s%N)
  local got
  if [ "$client" = curl ]; then got=$MM_TMP/fetched-$name/curl.eml; else
    got=$(mm_find_by_subject "$MM_TMP/fetched-$name" "$subject"); fi
  [ -n "$got" ] && grep -q "^Subject: $subject" "$got" || mm_fail "$name: $client got nothing"
  mm_extract_attachment "$got" video.mp4 "$MM_TMP/back-$name.mp4"
  end=$(date +%s%N)
  # Where the time went: send, delivery (seen by a 200 ms poll), the client's read, extraction.
  [ "$client" = curl ] && mm_curl_dele bob "$port"
  echo "$round $name $client $(((sent - start) / 1000000)) $(((delivered - sent) / 1000000))" \
    "$(((fetched - delivered) / 1000000)) $(((end - fetched) / 1000000))" >>"$MM_TMP/phases"
  kill "$sampler" "$ssampler" 2>/dev/null; wait "$sampler" "$ssampler" 2>/dev/null || true
  [ "$(sha256sum "$MM_TMP/back-$name.mp4" | cut -d' ' -f1)" = "$sha" ] || mm_fail "$name ($client): video changed"
  local peak=$(($(cat "$MM_TMP/peak-$name") - base)) speak=$(($(cat "$MM_TMP/speak-$name") - sbase))
  echo "$round $name $client $(((end - start) / 1000000)) $(((fetched - start) / 1000000)) $peak $maildir $speak" \
    >>"$MM_TMP/results"
  mm_info "round $round $name $client: $(((end - start) / 1000000)) ms, queue peak +$peak B, Maildir $maildir B, mm-milter spool peak +$speak B"
  rm -f "$got" "$MM_TMP/back-$name.mp4"
}

mm_info "making a ${mib} MiB video with ffmpeg"
mm_make_video "$MM_TMP/video.mp4" "$mib"
size=$(($(stat -c %s "$MM_TMP/video.mp4") + 32))

cases=${MM_HEADLINE_CASES:-plain mediamail mmsend filter}
clients=${MM_HEADLINE_CLIENTS:-fetchmail curl}
rounds=${MM_HEADLINE_ROUNDS:-1}
for c in $clients; do
  case $c in fetchmail | curl) ;; *) mm_fail "unknown client $c in MM_HEADLINE_CLIENTS" ;; esac
done
one_case() {
  local cl
  for cl in $clients; do
    case $1 in
      plain) run_case plain "" "$MM_POP3_PORT" swaks "$cl" ;;
      mediamail) run_case mediamail "inet:127.0.0.1:$MM_MILTER_PORT" "$MM_FETCHER_PORT" swaks "$cl" ;;
      mmsend) run_case mmsend "" "$MM_FETCHER_PORT" mmsend "$cl" ;;
      filter) run_case filter "" "$MM_FETCHER_PORT" filter "$cl" ;;
      stream) run_case stream "" "$STREAM_PORT" filter "$cl" ;;
      *) mm_fail "unknown case $1 in MM_HEADLINE_CASES" ;;
    esac
  done
}
others=$(echo "$cases" | tr ' ' '\n' | grep -vx plain | tr '\n' ' ')
: >"$MM_TMP/results"
: >"$MM_TMP/phases"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="plain $others"; else order="$(echo "$others" | tr ' ' '\n' | tac | tr '\n' ' ') plain"; fi
  for c in $order; do one_case "$c"; done
done
case " $cases " in *" filter "*) grep -q 'filter: detached 1' "$MM_TMP/mm-milter.log" || mm_fail "filter: mm-milter logged no detach" ;; esac
case " $cases " in *" stream "*) grep -q 'streaming .* while its media download' "$MM_TMP/mm-fetcher-stream.log" ||
  mm_fail "stream: mm-fetcher logged no streaming" ;; esac

{
  echo "headline: video $size bytes (a new SHA-256 for every case), $(nproc) cores, $rounds round(s), $(date -u +%FT%TZ)"
  python3 - "$MM_TMP/results" <<'PY'
import statistics, sys
res = {}   # (round, case, client) -> (ms to the attachment, ms to the message in the client, queue, maildir, spool)
for r, name, client, ms, ms_client, q, m, sp in (l.split() for l in open(sys.argv[1])):
    res[(int(r), name, client)] = (int(ms), int(ms_client), int(q), int(m), int(sp))
cases = [c for c in ["plain", "mediamail", "mmsend", "filter", "stream"] if any(k[1] == c for k in res)]
clients = [c for c in ["fetchmail", "curl"] if any(k[2] == c for k in res)]
rounds = sorted({k[0] for k in res})
print("%-6s %-10s %-9s %9s %12s %13s %11s %11s %15s %11s %12s %13s" % ("round", "case", "client", "wall_ms",
      "in_client_ms", "queue_peak_B", "maildir_B", "server_B", "mm_spool_peak_B", "time_ratio", "client_ratio",
      "bytes_ratio"))
ratios, client_ratios, bytes_ratios = {}, {}, {}
for r in rounds:
    for cl in clients:
        p = res[(r, "plain", cl)]
        for c in cases:
            ms, msc, q, m, sp = res[(r, c, cl)]
            tr, cr, br = ms / p[0], msc / p[1], (q + m) / (p[2] + p[3])
            ratios.setdefault((c, cl), []).append(tr)
            client_ratios.setdefault((c, cl), []).append(cr)
            bytes_ratios.setdefault(c, []).append(br)
            spool = "-" if c in ("plain", "mmsend") else str(sp)
            print("%-6d %-10s %-9s %9d %12d %13d %11d %11d %15s %11.3f %12.3f %13.2e" % (r, c, cl, ms, msc, q, m, q + m,
                  spool, tr, cr, br))
print("wall_ms: sender's start to the attachment extracted and verified (the headline); in_client_ms: to the "
      "message in the client, before the extraction. server_B = queue_peak_B + maildir_B: what the mail server held. "
      "mm_spool_peak_B: peak of mm-milter's spool (store.dir/spool), MediaMail's scratch copy on the sender's "
      "gateway, deleted at the end of each message; not in server_B.")
for c in cases:
    if c == "plain":
        continue
    for cl in clients:
        print("%s, read with %s: time ratio vs plain median %.3f (rounds: %s; goal <= 1.0); to the message in the "
              "client %.3f (rounds: %s)" % (c, cl, statistics.median(ratios[(c, cl)]),
              " ".join("%.3f" % x for x in ratios[(c, cl)]), statistics.median(client_ratios[(c, cl)]),
              " ".join("%.3f" % x for x in client_ratios[(c, cl)])))
    print("%s: server bytes ratio median %.2e (goal <= 1e-4)" % (c, statistics.median(bytes_ratios[c])))
PY
  echo "phases (ms): round case client send deliver read extract"
  sed 's/^/  /' "$MM_TMP/phases"
} | tee "$out"
