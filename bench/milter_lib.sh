# shellcheck shell=bash
# milter_lib.sh - shared by the bench/milter_*.sh benchmarks: a private Postfix
# (main.cf lines of docs/postfix.md) with or without mm-milter, big video mails
# made fast, peak RSS of a process. Source after tests/integration/lib/*.sh.

# Write a fake MP4 of MIB mebibytes at PATH (an ftyp box, then random bytes).
mb_make_video() {
  local path=$1 mib=$2
  { printf '\0\0\0\x18ftypmp42\0\0\0\0mp42isom'; head -c $((mib * 1048576 - 24)) /dev/urandom; } >"$path"
}

# Write a mail with VIDEO attached (base64, 76-column CRLF lines) at PATH.
mb_make_mail() { mm_make_media_mail "$1" "$2" video/mp4; }

# Print the peak RSS (VmHWM, KiB) of PID.
mb_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Print seconds since the epoch with nanoseconds.
mb_now() { date +%s.%N; }

# Print A / B with 3 decimals.
mb_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
