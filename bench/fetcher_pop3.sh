#!/usr/bin/env bash
# fetcher_pop3.sh - mm-fetcher against Dovecot, side by side in one run:
#  1. MSGS plain messages read (LIST + RETR each + QUIT, python poplib) directly from
#     Dovecot and through mm-fetcher, cold (message cache emptied: a first session)
#     and warm, alternating; goal <= 1.15x the direct time.
#  2. RETR of a message whose VIDEO_MIB video mm-fetcher re-inserted, against direct
#     RETR from Dovecot of the same message never detached (curl, to /dev/null);
#     goal >= 0.8x the direct throughput. Media detached with mmsend --link,
#     served by mm-gateway, downloaded and verified by mm-fetcher before timing.
#  3. Peak RSS (VmHWM) of mm-fetcher over the whole run, goal <= 64 MiB.
#
#   bench/fetcher_pop3.sh [MSGS] [VIDEO_MIB] [REPS]     (defaults 500 1024 3)
# Env: MM_BUILD_DIR (default ./build). Uses tests/integration/lib/mailstack.sh.
set -euo pipefail

MSGS=${1:-500}
VIDEO_MIB=${2:-1024}
REPS=${3:-3}
MM_SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
MM_BUILD_DIR=${MM_BUILD_DIR:-$MM_SOURCE_DIR/build}
export MM_SOURCE_DIR MM_BUILD_DIR
FETCHER=$MM_BUILD_DIR/fetcher/mm-fetcher
GATEWAY=$MM_BUILD_DIR/gateway/mm-gateway
MMSEND=$MM_BUILD_DIR/mmsend/mmsend
for b in "$FETCHER" "$GATEWAY" "$MMSEND"; do
  [ -x "$b" ] || { echo "no $b: build first (or set MM_BUILD_DIR)" >&2; exit 1; }
done
. "$MM_SOURCE_DIR/tests/integration/lib/mailstack.sh"
set +e   # the harness reports failures itself

mm_tmpdir_init
mm_dovecot_start
T=$MM_TMP
maildir() { local d=$MM_MAIL_DIR/$1/Maildir; mkdir -p "$d/new" "$d/cur" "$d/tmp"; echo "$d"; }

# --- 1. plain messages -------------------------------------------------------
python3 - "$(maildir bob)" "$MSGS" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    body = "".join("Line %d of message %d, ordinary text for a benchmark.\r\n" % (j, i) for j in range(60))
    msg = ("From: a%d@example.test\r\nTo: bob@example.test\r\nSubject: plain %d\r\n"
           "Message-ID: <%d@bench>\r\n\r\n" % (i, i, i)) + body
    open(os.path.join(d, "new", "%d.M%d.bench" % (1700000000 + i, i)), "w", newline="").write(msg)
PY
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR"

FPORT=$(mm_free_port)
GPORT=$(mm_free_port)
cat >"$T/bench.conf" <<EOF
[store]
dir = $T/store
[gateway]
listen = 127.0.0.1:$GPORT
public_url = https://127.0.0.1:$GPORT
[fetcher]
listen = 127.0.0.1:$FPORT
upstream = pop3://127.0.0.1:$MM_POP3_PORT
upstream_tls = none
cache_dir = $T/cache
allow_private = true
login_wait = 60s
[mmsend]
smtp = sendmail
sendmail = $T/capture.sh
[log]
level = warning
EOF
"$FETCHER" -c "$T/bench.conf" 2>>"$T/fetcher.log" &
FPID=$!
mm_register_pid "$FPID"
mm_wait_port "$FPORT" 10 || mm_fail "mm-fetcher did not start"

readall() {   # readall PORT USER -> seconds
  python3 - "$1" "$2" <<'PY'
import poplib, sys, time
t = time.perf_counter()
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=600)
p.user(sys.argv[2]); p.pass_("secret")
n = len(p.list()[1])
for i in range(1, n + 1):
    p.retr(i)
p.quit()
print("%.3f %d" % (time.perf_counter() - t, n))
PY
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for _ in $(seq "$REPS"); do
  # Emptying the message cache makes the next session a first one again.
  find "$T/cache/msg" -type f -delete 2>/dev/null
  readall "$FPORT" bob >>"$T/cold.txt"
  find "$T/cache/msg" -type f | wc -l >"$T/cold_files.txt"
  readall "$MM_POP3_PORT" bob >>"$T/direct.txt"
  readall "$FPORT" bob >>"$T/warm.txt"
done
n_direct=$(awk '{print $2}' "$T/direct.txt" | head -1)
n_warm=$(awk '{print $2}' "$T/warm.txt" | head -1)
[ "$n_direct" = "$MSGS" ] && [ "$n_warm" = "$MSGS" ] || mm_fail "read $n_direct direct, $n_warm via fetcher, want $MSGS"
d=$(awk '{print $1}' "$T/direct.txt" | median)
w=$(awk '{print $1}' "$T/warm.txt" | median)
c=$(awk '{print $1}' "$T/cold.txt" | median)
echo "plain: $MSGS messages, median of $REPS: direct ${d}s, via mm-fetcher warm ${w}s" \
  "(ratio $(python3 -c "print('%.2f' % ($w / $d))")), first session (cold cache) ${c}s" \
  "(ratio $(python3 -c "print('%.2f' % ($c / $d))")), files in the message cache after a first session:" \
  "$(cat "$T/cold_files.txt")"

# --- 2. a message with a VIDEO_MIB video --------------------------------------
# Random bytes behind a real MP4 "ftyp" box: the fetcher puts back only media that
# sniff as their declared type (fetcher.types).
{ printf '\0\0\0\x18ftypmp42\0\0\0\0mp42isom'; head -c $((VIDEO_MIB * 1048576 - 24)) /dev/urandom; } >"$T/video.mp4"
cat >"$T/capture.sh" <<EOF
#!/bin/sh
cat >"$T/detached.eml"
EOF
chmod 755 "$T/capture.sh"
mkdir -p "$T/store"
"$MMSEND" -c "$T/bench.conf" -q --link --detach-all --from alice@example.test --to carol@example.test \
  --subject "big video" --body "the video" --attach "$T/video.mp4" >"$T/mmsend.out" 2>&1 ||
  mm_fail "mmsend: $(tail -3 "$T/mmsend.out")"
grep -q '^X-Media-Handle:' "$T/detached.eml" || mm_fail "mmsend did not detach the video"
cp "$T/detached.eml" "$(maildir carol)/new/1800000000.M1.bench"
# The same message as it would be without MediaMail: the video attached, base64.
python3 - "$T/video.mp4" "$(maildir alice)/new/1800000001.M1.bench" <<'PY'
import base64, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f, open(dst, "wb") as o:
    o.write(b"From: alice@example.test\r\nTo: carol@example.test\r\nSubject: big video\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
            b"the video\r\n--b\r\nContent-Type: video/mp4; name=\"video.mp4\"\r\n"
            b"Content-Disposition: attachment; filename=\"video.mp4\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    while True:
        chunk = f.read(57 * 20000)
        if not chunk:
            break
        for i in range(0, len(chunk), 57):
            o.write(base64.b64encode(chunk[i:i + 57]) + b"\r\n")
    o.write(b"--b--\r\n")
PY
chown -R "$MM_VMAIL_UID:$MM_VMAIL_GID" "$MM_MAIL_DIR"
"$GATEWAY" -c "$T/bench.conf" >>"$T/gateway.log" 2>&1 &
mm_register_pid $!
mm_wait_port "$GPORT" 20 || mm_fail "mm-gateway did not start"
# Download, verify and re-insert (not timed here): poll until carol sees the message.
t0=$SECONDS
for _ in $(seq 600); do
  [ "$(curl -s --max-time 600 -u carol:secret "pop3://127.0.0.1:$FPORT/" | grep -c '^1 ')" = 1 ] && break
  sleep 1
done
[ "$(curl -s --max-time 600 -u carol:secret "pop3://127.0.0.1:$FPORT/" | grep -c '^1 ')" = 1 ] ||
  mm_fail "the video message never appeared: $(tail -3 "$T/fetcher.log")"
prep=$((SECONDS - t0))
retr() {   # retr PORT USER -> "seconds bytes"
  curl -s --max-time 1200 -u "$2:secret" "pop3://127.0.0.1:$1/1" -o /dev/null -w '%{time_total} %{size_download}\n'
}
for _ in $(seq "$REPS"); do
  retr "$MM_POP3_PORT" alice >>"$T/vdirect.txt"
  retr "$FPORT" carol >>"$T/vfetch.txt"
done
vd=$(awk '{print $1}' "$T/vdirect.txt" | median)
vf=$(awk '{print $1}' "$T/vfetch.txt" | median)
bd=$(awk '{print $2}' "$T/vdirect.txt" | head -1)
bf=$(awk '{print $2}' "$T/vfetch.txt" | head -1)
# A RETR that fails fast would look like a fast one: the video must really be there.
[ "${bf:-0}" -ge "$((VIDEO_MIB * 1048576))" ] ||
  mm_fail "RETR through mm-fetcher gave ${bf:-0} bytes, not the video: $(tail -3 "$T/fetcher.log")"
python3 - "$vd" "$bd" "$vf" "$bf" "$VIDEO_MIB" "$REPS" "$prep" <<'PY'
import sys
vd, bd, vf, bf, mib, reps, prep = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
td, tf = bd / vd / 1e6, bf / vf / 1e6
print("video: %s MiB, median of %s RETRs: direct %d bytes in %.2fs (%.0f MB/s), via mm-fetcher %d bytes in %.2fs "
      "(%.0f MB/s), throughput ratio %.2f; download+verify+re-insert before that took %ss" %
      (mib, reps, bd, vd, td, bf, vf, tf, tf / td, prep))
PY
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$FPID/status")
echo "mm-fetcher peak RSS (VmHWM over the whole run): $((hwm / 1024)) MiB"
