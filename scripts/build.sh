#!/usr/bin/env bash
# build.sh - install the Debian packages MediaMail needs, then configure and
# build it into build/ (or $MM_BUILD_DIR). Used by demo.sh and test.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MM_BUILD_DIR:-$here/build}

# MM_SKIP_DEPS=1: the caller has just run install-deps.sh (test.sh's second tree).
[ "${MM_SKIP_DEPS:-0}" = 1 ] || bash "$here/scripts/install-deps.sh"
# ccache (installed by install-deps.sh): a second tree with the same flags -- the
# package test's /usr tree, a fresh clone's -- compiles from the cache. The build
# directory is left out of the hash (CCACHE_NOHASHDIR) so that trees in other
# directories share it; only the debug info's compile directory differs.
launcher=()
if [ "${MM_CCACHE:-1}" = 1 ] && command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_NOHASHDIR=true
fi
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE="${MM_BUILD_TYPE:-RelWithDebInfo}" "${launcher[@]}" ${MM_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)"
echo "build: done in $build"
