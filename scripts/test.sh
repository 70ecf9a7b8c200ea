#!/usr/bin/env bash
# test.sh - install what is needed, build, and run every test (unit and
# integration) with ctest. Run as root on Debian 12. Extra arguments go to ctest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MM_BUILD_DIR=${MM_BUILD_DIR:-$here/build}
bash "$here/scripts/build.sh"
cd "$MM_BUILD_DIR"
ctest --output-on-failure --timeout 1200 "$@"
