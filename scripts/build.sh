#!/usr/bin/env bash
# build.sh - install the Debian packages MediaMail needs, then configure and
# build it into build/ (or $MM_BUILD_DIR). Used by demo.sh and test.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MM_BUILD_DIR:-$here/build}

bash "$here/scripts/install-deps.sh"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE="${MM_BUILD_TYPE:-RelWithDebInfo}" ${MM_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)"
echo "build: done in $build"
