#!/usr/bin/env bash
# run.sh - build the libFuzzer targets (clang, ASan + UBSan) and run one of them
# for a set time or number of inputs, seeded from fuzz/seeds/ and, for the MIME
# targets, from the shared corpus ../shared/corpus/mime (relative to the repo root).
#
#   [MM_FUZZ_MAX_LEN=N] fuzz/run.sh TARGET [LIMIT]     TARGET: handle | part_header | mime | pop3 | http | milter | smtp | upstream | imap | all
#                                  LIMIT:  600s (seconds) or 1000000 (inputs); default 60s
#
# Build tree: $MM_FUZZ_BUILD (default build-fuzz/). New corpus entries go to
# build-fuzz/corpus/TARGET, crashes to build-fuzz/artifacts/TARGET/, the log to
# build-fuzz/logs/TARGET.log; the last stats line is printed at the end.
# Runs at nice 10 on one core: the machine is shared.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MM_FUZZ_BUILD:-$here/build-fuzz}
target=${1:?usage: fuzz/run.sh TARGET [600s|1000000]}
limit=${2:-60s}
targets=(handle part_header mime pop3 http milter smtp upstream imap)

if [ "$target" = all ]; then
  for t in "${targets[@]}"; do "$0" "$t" "$limit"; done
  exit 0
fi
case " ${targets[*]} " in *" $target "*) ;; *) echo "run.sh: unknown target $target" >&2; exit 2 ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$here" -B "$build" -DMM_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
nice -n 10 cmake --build "$build" -j2 --target "fuzz_$target" >/dev/null

corpus=$build/corpus/$target
artifacts=$build/artifacts/$target
mkdir -p "$corpus" "$artifacts" "$build/logs"
seeds=()
case $target in
  handle | part_header | pop3 | smtp | upstream | imap) seeds=("$here/fuzz/seeds/$target") ;;
  http) seeds=("$here/fuzz/seeds/http" "$here/fuzz/seeds/range") ;;
  mime | milter)
    seeds=("$here/fuzz/seeds/mime")
    shared=$here/../shared/corpus/mime
    [ -d "$shared" ] && seeds+=("$shared") || echo "run.sh: no shared corpus at $shared" >&2
    ;;
esac

args=(-print_final_stats=1 -timeout=20 -rss_limit_mb=2048 "-artifact_prefix=$artifacts/")
case $limit in
  *s) args+=("-max_total_time=${limit%s}") ;;
  *) args+=("-runs=$limit") ;;
esac
# Whole messages: long enough for nested multiparts, short enough to stay fast.
# MM_FUZZ_MAX_LEN trades depth for speed (the MIME engine runs ~350 exec/s at 64 KiB).
case $target in mime | milter) max_len=${MM_FUZZ_MAX_LEN:-65536} ;; *) max_len=${MM_FUZZ_MAX_LEN:-4096} ;; esac
args+=("-max_len=$max_len")

# The file-based targets keep their scratch files on tmpfs, in a directory of ours.
scratch=$(mktemp -d /dev/shm/mm-fuzz-run.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
log=$build/logs/$target.log
echo "run.sh: fuzz_$target ${args[*]} (log $log)"
rc=0
MM_FUZZ_TMP=$scratch nice -n 10 "$build/fuzz/fuzz_$target" "${args[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^(Done|stat::)' "$log" || true
if [ $rc -ne 0 ]; then
  echo "run.sh: fuzz_$target FAILED (exit $rc); see $log and $artifacts" >&2
  grep -m5 -E 'ERROR|SUMMARY|Test unit written' "$log" >&2 || true
fi
exit $rc
