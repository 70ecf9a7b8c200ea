#!/usr/bin/env bash
# test.sh - install what is needed, build, and run every test (unit and
# integration) with ctest. The unit tests, the e2e test and the before-queue
# filter test run in a second tree built with ASan + UBSan (-DMM_SANITIZE=ON),
# which checks more than the plain build and so replaces their plain run.
# Run as root on Debian 12. Extra arguments go to the first ctest.
# MM_SANITIZE_RUN=0 skips the sanitizer stage and runs those three in the plain
# tree instead; MM_ASAN_BUILD_DIR picks the sanitizer tree.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
bash "$here/scripts/build.sh"
rc=0
sanitized='^(unit|integration\.e2e|integration\.filter)$'
skip=()
[ "${MM_SANITIZE_RUN:-1}" = 0 ] || skip=(-E "$sanitized")
(cd "$MM_BUILD_DIR" && ctest --output-on-failure --timeout 1200 "${skip[@]}" "$@") || rc=$?

# The sanitizer stage runs even when a test failed above: its findings are
# often the explanation. The script fails if either stage failed.
[ "${MM_SANITIZE_RUN:-1}" = 0 ] && exit "$rc"
asan=${MM_ASAN_BUILD_DIR:-$MM_BUILD_DIR-asan}
echo "test.sh: sanitizer stage (ASan + UBSan) in $asan"
MM_BUILD_DIR=$asan MM_CMAKE_ARGS="-DMM_SANITIZE=ON" bash "$here/scripts/build.sh"
# Any UBSan report fails the test; leaks are checked, less GLib/GMime's
# process-wide caches (fuzz/lsan.supp says why).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$here/fuzz/lsan.supp:print_suppressions=0
cd "$asan"
ctest --output-on-failure --timeout 1200 -R "$sanitized" || rc=$?
exit "$rc"
