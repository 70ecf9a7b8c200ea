#!/usr/bin/env bash
# test.sh - install what is needed, build, and run every test (unit and
# integration) with ctest. The unit tests, the e2e test and the before-queue
# filter test run in a second tree built with ASan + UBSan (-DMM_SANITIZE=ON),
# which checks more than the plain build and so replaces their plain run.
# Run as root on Debian 12. Extra arguments go to every ctest of the plain tree.
#
# Order, chosen for the time (docs/PERFORMANCE.md, "The test suite's time"):
#   1. build the plain tree;
#   2. start building the sanitizer tree in the background at nice 19: the
#      integration tests mostly wait on daemons, and the compiler takes the
#      idle CPU without taking it from a test;
#   3. the integration tests, MM_TEST_JOBS (default: the number of cores) at a
#      time, then those labelled "exclusive" one by one;
#   4. the sanitizer tests, once their tree is built.
# MM_SANITIZE_RUN=0 skips the sanitizer stage and runs those three in the plain
# tree instead; MM_ASAN_BUILD_DIR picks the sanitizer tree.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
jobs=${MM_TEST_JOBS:-$(nproc)}
start=$SECONDS
stamp() { echo "test.sh: $1 ($((SECONDS - start)) s)"; }

bash "$here/scripts/build.sh"
stamp "plain tree built"
rc=0
sanitize=${MM_SANITIZE_RUN:-1}
sanitized='^(unit|integration\.e2e|integration\.filter)$'
asan=${MM_ASAN_BUILD_DIR:-$MM_BUILD_DIR-asan}
asan_build=
if [ "$sanitize" != 0 ]; then
  mkdir -p "$asan"
  # install-deps.sh has run already (build.sh above): only the build runs here.
  MM_BUILD_DIR=$asan MM_CMAKE_ARGS="-DMM_SANITIZE=ON" MM_SKIP_DEPS=1 \
    nice -n 19 bash "$here/scripts/build.sh" >"$asan/build.log" 2>&1 &
  asan_build=$!
fi
# If we stop early (a signal), the background build goes with us.
trap '[ -z "$asan_build" ] || kill "$asan_build" 2>/dev/null || true' EXIT

skip=()
[ "$sanitize" = 0 ] || skip=(-E "$sanitized")
(cd "$MM_BUILD_DIR" && ctest --output-on-failure --timeout 1200 -j"$jobs" -LE exclusive "${skip[@]}" "$@") || rc=$?
stamp "integration tests done (rc $rc)"
(cd "$MM_BUILD_DIR" && ctest --output-on-failure --timeout 1200 -L exclusive "${skip[@]}" "$@") || rc=$?
stamp "exclusive tests done (rc $rc)"

# The sanitizer stage runs even when a test failed above: its findings are
# often the explanation. The script fails if either stage failed.
[ "$sanitize" = 0 ] && exit "$rc"
echo "test.sh: sanitizer stage (ASan + UBSan) in $asan"
if ! wait "$asan_build"; then
  asan_build=
  tail -40 "$asan/build.log" >&2
  echo "test.sh: the sanitizer tree did not build (full log: $asan/build.log)" >&2
  exit 1
fi
asan_build=
stamp "sanitizer tree built"
# Any UBSan report fails the test; leaks are checked, less GLib/GMime's
# process-wide caches (fuzz/lsan.supp says why).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$here/fuzz/lsan.supp:print_suppressions=0
cd "$asan"
ctest --output-on-failure --timeout 1200 -j"$jobs" -R "$sanitized" || rc=$?
stamp "sanitizer tests done (rc $rc)"
exit "$rc"
