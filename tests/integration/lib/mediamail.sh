# shellcheck shell=bash
# mediamail.sh - start the MediaMail programs next to the private mail stack of
# mailstack.sh, make test media, send and fetch mail. Used by the integration
# tests and by the demo (scripts/demo.sh), so both run exactly the same loop.
#
#   . "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
#   . "$MM_SOURCE_DIR/tests/integration/lib/mediamail.sh"
#   mm_tmpdir_init; mm_mediamail_start
#
# Needs MM_BUILD_DIR (where the binaries are) and MM_SOURCE_DIR.
# Exported: MM_CONF, MM_GATEWAY_PORT, MM_MILTER_PORT, MM_FETCHER_PORT, MM_STORE,
# MM_FILTER_PORT (mm-milter's before-queue filter), MM_AFTER_PORT (the smtpd it
# hands on to) and, from mm_postfix_start, MM_SUBMIT_PORT (the smtpd that uses it).

# Path of a built program (the build tree, or bin/ or sbin/ under an install prefix).
mm_bin() {
  local name=$1 dir
  case $name in
    mm-gateway) dir=gateway ;;
    mm-milter) dir=milter ;;
    mm-fetcher) dir=fetcher ;;
    mmsend) dir=mmsend ;;
    *) dir=. ;;
  esac
  if [ -x "$MM_BUILD_DIR/$dir/$name" ]; then
    echo "$MM_BUILD_DIR/$dir/$name"
  elif [ -x "$MM_BUILD_DIR/bin/$name" ]; then
    echo "$MM_BUILD_DIR/bin/$name"
  elif [ -x "$MM_BUILD_DIR/sbin/$name" ]; then
    echo "$MM_BUILD_DIR/sbin/$name"   # the daemons, under an install prefix
  else
    mm_fail "$name not built under $MM_BUILD_DIR"
  fi
}

# Write $MM_TMP/mediamail.conf for all three programs on fresh loopback ports.
mm_write_conf() {
  MM_GATEWAY_PORT=$(mm_free_port)
  MM_MILTER_PORT=$(mm_free_port)
  MM_FETCHER_PORT=$(mm_free_port)
  MM_FILTER_PORT=$(mm_free_port)
  MM_AFTER_PORT=$(mm_free_port)
  MM_STORE=$MM_TMP/store
  MM_CONF=$MM_TMP/mediamail.conf
  export MM_GATEWAY_PORT MM_MILTER_PORT MM_FETCHER_PORT MM_FILTER_PORT MM_AFTER_PORT MM_STORE MM_CONF
  cat >"$MM_CONF" <<EOF
# Written by tests/integration/lib/mediamail.sh for one test run.
[store]
dir = $MM_STORE

[gateway]
listen = 127.0.0.1:$MM_GATEWAY_PORT
public_url = https://127.0.0.1:$MM_GATEWAY_PORT

[milter]
socket = inet:$MM_MILTER_PORT@127.0.0.1
min_size = 1M
# The before-queue filter too; Postfix's submission service uses it.
proxy_listen = 127.0.0.1:$MM_FILTER_PORT
proxy_next = 127.0.0.1:$MM_AFTER_PORT

[fetcher]
listen = 127.0.0.1:$MM_FETCHER_PORT
cache_dir = $MM_TMP/fetcher-cache
# One machine: the sender's gateway is on loopback, and Dovecot speaks plain POP3.
allow_private = true
upstream_tls = none
EOF
}

# Start PROGRAM with the shared config (extra args appended), log to $MM_TMP/NAME.log.
mm_start_program() {
  local name=$1
  shift
  "$(mm_bin "$name")" -c "$MM_CONF" "$@" >>"$MM_TMP/$name.log" 2>&1 &
  local pid=$!
  mm_register_pid "$pid"
  echo "$pid" >"$MM_TMP/$name.pid"
}

# Start the sender's side and the servers: gateway, milter, Postfix (with the milter), Dovecot.
mm_mediamail_start_servers() {
  mm_write_conf
  mkdir -p "$MM_STORE"
  mm_start_program mm-gateway
  mm_wait_port "$MM_GATEWAY_PORT" 20 || mm_fail "mm-gateway did not start: $(tail -5 "$MM_TMP/mm-gateway.log")"
  mm_start_program mm-milter
  mm_wait_port "$MM_MILTER_PORT" 20 || mm_fail "mm-milter did not start: $(tail -5 "$MM_TMP/mm-milter.log")"
  mm_wait_port "$MM_FILTER_PORT" 20 || mm_fail "mm-milter's filter did not start: $(tail -5 "$MM_TMP/mm-milter.log")"
  MM_PROXY_FILTER=127.0.0.1:$MM_FILTER_PORT MM_PROXY_NEXT=127.0.0.1:$MM_AFTER_PORT \
    mm_postfix_start "inet:127.0.0.1:$MM_MILTER_PORT"
  mm_dovecot_start
}

# Start mm-fetcher in front of the private Dovecot; extra arguments (--set K=V) are passed on.
mm_fetcher_start() {
  mm_start_program mm-fetcher --set "fetcher.upstream=pop3://127.0.0.1:$MM_POP3_PORT" "$@"
  mm_wait_port "$MM_FETCHER_PORT" 20 || mm_fail "mm-fetcher did not start: $(tail -5 "$MM_TMP/mm-fetcher.log")"
}

# Start the whole loop: gateway, milter, Postfix (with the milter), Dovecot, fetcher.
mm_mediamail_start() {
  mm_mediamail_start_servers
  mm_fetcher_start
}

# Copy media file SRC to DST with 32 random bytes appended (players ignore
# trailing bytes): another SHA-256, so that neither the sender's store nor the
# fetcher's cache, both keyed by content, already holds it. For benchmarks that
# send one video many times and must pay for every copy.
mm_unique_copy() {
  cp "$1" "$2" && head -c 32 /dev/urandom >>"$2"
}

# Make a real MP4 (H.264 + AAC) of at least MIB mebibytes at PATH with ffmpeg.
# mm_random_mp4 FILE BYTES: BYTES of random data behind a real MP4 "ftyp" box,
# quick to make at any size. The fetcher puts back only bytes that sniff as the
# declared media type (fetcher.types); random bytes alone are refused.
mm_random_mp4() {
  printf '\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom' >"$1"
  head -c $(($2 - 24)) /dev/urandom >>"$1"
}

mm_make_video() {
  local path=$1 mib=${2:-21}
  # Constant bit rate, so the size follows from the duration: 24 Mbit/s is 3 MB/s.
  local secs=$(((mib * 1048576 + 2999999) / 3000000 + 1))
  ffmpeg -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t "$secs" -c:v libx264 -preset ultrafast -b:v 24M -minrate 24M -maxrate 24M -bufsize 4M \
    -x264-params nal-hrd=cbr -c:a aac -b:a 128k -shortest -movflags +faststart "$path" \
    >"$MM_TMP/ffmpeg.log" 2>&1 || mm_fail "ffmpeg failed: $(tail -3 "$MM_TMP/ffmpeg.log")"
  local size
  size=$(stat -c %s "$path")
  [ "$size" -ge $((mib * 1048576)) ] || mm_fail "ffmpeg made only $size bytes"
}

# Send a mail with swaks through the private Postfix: FROM TO SUBJECT BODY [ATTACHMENT TYPE].
# The senders here go to MM_SEND_PORT if set (MM_SUBMIT_PORT: through the filter).
mm_swaks_send() {
  local from=$1 to=$2 subject=$3 body=$4 file=${5:-} type=${6:-}
  local args=(--server "127.0.0.1:${MM_SEND_PORT:-$MM_SMTP_PORT}" --from "$from" --to "$to"
    --header "Subject: $subject" --body "$body")
  if [ -n "$file" ]; then
    args+=(--attach-type "$type" --attach-name "$(basename "$file")" --attach "@$file")
  fi
  swaks "${args[@]}" >"$MM_TMP/swaks.out" 2>&1 || mm_fail "swaks failed: $(tail -5 "$MM_TMP/swaks.out")"
}

# Write a mail with FILE attached as TYPE (base64, 76 columns, CRLF lines) at PATH:
# FILE PATH [TYPE] [SUBJECT]. Streams: any size.
mm_make_media_mail() {
  local file=$1 path=$2 type=${3:-video/mp4} subject=${4:-big video} name
  name=$(basename "$file")
  {
    printf 'From: alice@example.test\r\nTo: bob@example.test\r\nSubject: %s\r\nMIME-Version: 1.0\r\n' "$subject"
    printf 'Content-Type: multipart/mixed; boundary="bb"\r\n\r\n--bb\r\nContent-Type: text/plain\r\n\r\nThe video.\r\n'
    printf -- '--bb\r\nContent-Type: %s; name="%s"\r\nContent-Disposition: attachment; filename="%s"\r\n' "$type" "$name" "$name"
    printf 'Content-Transfer-Encoding: base64\r\n\r\n'
    base64 -w 76 "$file" | sed 's/$/\r/'
    printf -- '--bb--\r\n'
  } >"$path"
}

# Send a prepared message file (CRLF lines) over SMTP without loading it into
# memory, as swaks would (a 1 GiB attachment takes swaks over 20 GB): FROM TO FILE.
mm_smtp_send_big() {
  python3 "$MM_SOURCE_DIR/tests/integration/lib/smtp_send_file.py" "127.0.0.1:${MM_SEND_PORT:-$MM_SMTP_PORT}" "$1" "$2" "$3" \
    >"$MM_TMP/smtp_send.out" 2>&1 || mm_fail "sending $3 failed: $(tail -3 "$MM_TMP/smtp_send.out")"
}

# Send a prepared message file as is (swaks --data): FROM TO FILE.
mm_swaks_send_file() {
  swaks --server "127.0.0.1:${MM_SEND_PORT:-$MM_SMTP_PORT}" --from "$1" --to "$2" --data "@$3" \
    >"$MM_TMP/swaks.out" 2>&1 || mm_fail "swaks failed: $(tail -5 "$MM_TMP/swaks.out")"
}

# Read USER's mailbox through mm-fetcher with fetchmail; each message lands in OUTDIR as a file.
mm_fetchmail_via_fetcher() {
  local user=$1 outdir=$2
  mkdir -p "$outdir" "$MM_TMP/fmhome"
  cat >"$MM_TMP/mda.sh" <<EOF
#!/bin/sh
exec cat >"$outdir/\$(date +%s%N).\$\$.eml"
EOF
  chmod 755 "$MM_TMP/mda.sh"
  cat >"$MM_TMP/fetchmailrc" <<EOF
set no syslog
set logfile "$MM_TMP/fetchmail.log"
poll 127.0.0.1 with proto POP3 port $MM_FETCHER_PORT auth password timeout 120
  user "$user" there with password "$MM_POP3_PASS" is "root" here
  options sslproto '' no sslcertck fetchall
  mda "$MM_TMP/mda.sh"
EOF
  chmod 600 "$MM_TMP/fetchmailrc"
  local rc=0
  HOME=$MM_TMP/fmhome FETCHMAILHOME=$MM_TMP/fmhome \
    fetchmail -f "$MM_TMP/fetchmailrc" --nodetach --pidfile "$MM_TMP/fmhome/fetchmail.pid" \
    >"$MM_TMP/fetchmail.out" 2>&1 || rc=$?
  # fetchmail exits 1 when there was no mail: not an error here.
  [ $rc -eq 0 ] || [ $rc -eq 1 ] ||
    mm_fail "fetchmail exit $rc: $(tail -5 "$MM_TMP/fetchmail.out" "$MM_TMP/fetchmail.log" 2>/dev/null)"
}

# Print the file in DIR whose Subject header is SUBJECT.
mm_find_by_subject() {
  grep -l -m1 "^Subject: $2\$" "$1"/*.eml 2>/dev/null | head -n1
}

# Write attachment NAME of the message FILE to OUT (decoded); fail when absent.
mm_extract_attachment() {
  python3 - "$1" "$2" "$3" <<'EOF' || mm_fail "attachment $2 not found in $1"
import email, email.policy, sys
with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
for part in msg.walk():
    if part.get_filename() == sys.argv[2]:
        with open(sys.argv[3], "wb") as out:
            out.write(part.get_payload(decode=True))
        sys.exit(0)
sys.exit(1)
EOF
}

# Print the decoded text/plain body of the message FILE (first text/plain part).
mm_text_body() {
  python3 - "$1" <<'EOF'
import email, email.policy, sys
with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
part = msg.get_body(preferencelist=("plain",))
sys.stdout.write(part.get_content() if part else "")
EOF
}

# Print the bytes after the header block of FILE (the body), as stored.
mm_body_of() {
  python3 - "$1" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
for sep in (b"\r\n\r\n", b"\n\n"):
    i = data.find(sep)
    if i >= 0:
        sys.stdout.buffer.write(data[i + len(sep):].replace(b"\r\n", b"\n"))
        break
EOF
}

# Bytes of the message files in USER's Maildir (what the mail server stores).
mm_maildir_bytes() {
  find "$MM_MAIL_DIR/$1/Maildir/new" "$MM_MAIL_DIR/$1/Maildir/cur" -type f -printf '%s\n' 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}

# Writes to FILE the peak bytes under DIR, sampled every 100 ms, until killed
# (run it in the background): DIR FILE. For the benchmarks' queue peaks.
mm_sample_peak() {
  local dir=$1 file=$2 peak=0 b
  while :; do
    b=$(du -sb "$dir" 2>/dev/null | cut -f1 || echo 0)
    [ "${b:-0}" -gt "$peak" ] && peak=$b && echo "$peak" >"$file"
    sleep 0.1
  done
}

# Runs COMMAND while sampling the size of DIR every 50 ms, and sets
# MM_PEAK_GROWTH to the most DIR grew over its size before: DIR COMMAND [ARG...].
mm_peak_growth() {
  local dir=$1 file=$MM_TMP/peak.$BASHPID base rc=0
  shift
  base=$(du -sb "$dir" | cut -f1)
  echo "$base" >"$file"
  (
    peak=$base
    while :; do
      b=$(du -sb "$dir" 2>/dev/null | cut -f1 || echo 0)
      if [ "${b:-0}" -gt "$peak" ]; then peak=$b; echo "$peak" >"$file"; fi
      sleep 0.05
    done
  ) &
  local sampler=$!
  mm_register_pid "$sampler"
  "$@" || rc=$?
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  MM_PEAK_GROWTH=$(($(cat "$file") - base))
  return $rc
}

# The whole loop for one video: send VIDEO to bob@example.test with swaks, wait
# for delivery, read the mailbox through mm-fetcher with fetchmail, extract the
# video. Sets MM_SENT_SHA, MM_RECV_SHA, MM_STORED_BYTES (the mail in the
# Maildir), MM_STORED_MAIL (a copy of it), MM_LOOP_MS (send to readable), MM_FETCHED (the fetched message file),
# MM_QUEUE_PEAK (the most Postfix's queue directory grew while the mail was sent).
mm_video_loop() {
  local video=$1 subject=${2:-Our holiday video}
  local name
  name=$(basename "$video")
  MM_SENT_SHA=$(sha256sum "$video" | cut -d' ' -f1)
  local before start end
  before=$(mm_count_messages bob)
  start=$(date +%s%N)
  mm_peak_growth "$MM_TMP/postfix-queue" mm_swaks_send alice@example.test bob@example.test "$subject" \
    "Hi Bob, here is the video from the beach." "$video" video/mp4
  MM_QUEUE_PEAK=$MM_PEAK_GROWTH
  mm_wait_delivered bob $((before + 1)) 120 || mm_fail "the media mail was not delivered"
  MM_STORED_BYTES=$(mm_maildir_bytes bob)
  # Keep a copy of what the mail server stored; fetchmail deletes it.
  MM_STORED_MAIL=$MM_TMP/stored.eml
  find "$MM_MAIL_DIR/bob/Maildir/new" "$MM_MAIL_DIR/bob/Maildir/cur" -type f -exec cat {} + >"$MM_STORED_MAIL"
  mm_fetchmail_via_fetcher bob "$MM_TMP/fetched"
  end=$(date +%s%N)
  MM_LOOP_MS=$(((end - start) / 1000000))
  MM_FETCHED=$(mm_find_by_subject "$MM_TMP/fetched" "$subject")
  [ -n "$MM_FETCHED" ] || mm_fail "fetchmail did not deliver the media mail"
  mm_extract_attachment "$MM_FETCHED" "$name" "$MM_TMP/received-$name"
  MM_RECV_SHA=$(sha256sum "$MM_TMP/received-$name" | cut -d' ' -f1)
  export MM_SENT_SHA MM_RECV_SHA MM_STORED_BYTES MM_STORED_MAIL MM_LOOP_MS MM_FETCHED MM_QUEUE_PEAK
}

# Print the main.cf lines of docs/postfix.md (between its marker comments) for a milter on 127.0.0.1:PORT.
mm_postfix_doc_lines() {
  local port=$1
  sed -n '/^# mm-milter: begin main.cf$/,/^# mm-milter: end main.cf$/p' "$MM_SOURCE_DIR/docs/postfix.md" |
    sed "s/127\.0\.0\.1:8891/127.0.0.1:$port/g" | grep -v '^#'
}

# Store FILE with "mm-gateway put" (extra put args after it); sets MM_ITEM_URL, MM_ITEM_ID, MM_ITEM_TOKEN, MM_ITEM_SHA.
mm_gateway_put() {
  local out
  out=$("$(mm_bin mm-gateway)" -c "$MM_CONF" put "$@") || mm_fail "mm-gateway put $1 failed"
  MM_PUT_OUT=$out
  MM_ITEM_URL=$(awk '/^url:/{print $2}' <<<"$out")
  MM_ITEM_SHA=$(awk '/^sha256:/{print $2}' <<<"$out")
  [[ "$MM_ITEM_URL" =~ /m/([0-9a-f]{32})/([0-9a-f]{32})$ ]] || mm_fail "mm-gateway put printed no item URL"
  MM_ITEM_ID=${BASH_REMATCH[1]}
  MM_ITEM_TOKEN=${BASH_REMATCH[2]}
}

# The URL with ADDRESS's own token (normalized address) from the last mm_gateway_put.
mm_recipient_url() {
  local u
  u=$(awk -v a="$1" '$1 == "recipient:" && $2 == a {print $3}' <<<"$MM_PUT_OUT")
  [ -n "$u" ] || mm_fail "mm-gateway put printed no URL for $1"
  echo "$u"
}

# mm_wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds; 1 when SECONDS pass first.
mm_wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}

# mm_check_version_help PROGRAM...: each says "NAME (MediaMail) VERSION" (the
# project's version in CMakeLists.txt) to --version and prints the exit-code
# table of docs/exit-codes.md in --help. Sets MM_VERSION.
mm_check_version_help() {
  local version p n c
  version=$(sed -n 's/^project(MediaMail VERSION \([0-9.]*\).*/\1/p' "$MM_SOURCE_DIR/CMakeLists.txt")
  [ -n "$version" ] || mm_fail "no project version in CMakeLists.txt"
  for p in "$@"; do
    n=$(basename "$p")
    [ "$("$p" --version)" = "$n (MediaMail) $version" ] || mm_fail "$n --version: $("$p" --version)"
    "$p" --help >"$MM_TMP/help.txt" || mm_fail "$p --help failed"
    for c in "64  EX_USAGE" "66  EX_NOINPUT" "69  EX_UNAVAILABLE" "73  EX_CANTCREAT" "78  EX_CONFIG"; do
      grep -q "$c" "$MM_TMP/help.txt" || mm_fail "$n --help lacks '$c'"
    done
  done
  MM_VERSION=$version
}

# mm_handles FILE: one line "URL PIN SHA256" for each location part (X-Media-Handle,
# RFC 2231 continuations joined) of the message FILE.
mm_handles() {
  python3 - "$1" <<'EOF'
import email, email.utils, sys
with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f)
for part in msg.walk():
    if part.get("X-Media-Handle") is None:
        continue
    get = lambda k: email.utils.collapse_rfc2231_value(part.get_param(k, header="X-Media-Handle") or "")
    print(get("url"), get("pin"), get("sha256"))
EOF
}

# Stop the program started by mm_start_program NAME (SIGTERM, wait up to 10 s); fail if it does not exit 0.
mm_stop_program() {
  local pid i
  pid=$(cat "$MM_TMP/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && mm_fail "$1 still running 10 s after SIGTERM"
  wait "$pid" 2>/dev/null || mm_fail "$1 exited with status $?"
}
