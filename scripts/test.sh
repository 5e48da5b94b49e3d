#!/usr/bin/env bash
# Install what the tests need, build tlsfront three times (release with -Werror, ASan+UBSan,
# and ThreadSanitizer), run every test through ctest in the first two and the tests labelled
# tsan (loop tests, and the e2e tests where workers and the control loop run together) in the
# third. Exit code: non-zero if anything failed.
# Usage: scripts/test.sh [--fast]   (--fast: skip the sanitizer builds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/deps.sh

JOBS=$(nproc)
FAST=0
[ "${1:-}" = "--fast" ] && FAST=1

echo "== build (release, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTLSFRONT_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"

rc=0
echo "== ctest (release)"
(cd build && ctest --output-on-failure -j2 --timeout 600) || rc=1

if [ "$FAST" -eq 0 ]; then
  echo "== build (ASan+UBSan)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTLSFRONT_SANITIZE=ON \
        -DTLSFRONT_WERROR=ON >/dev/null
  cmake --build build-asan -j"$JOBS"
  echo "== ctest (ASan+UBSan)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=23"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # The image test builds its own binary from the Dockerfile: once (release pass) is enough.
  (cd build-asan && ctest --output-on-failure -j2 --timeout 900 -LE docker) || rc=1

  echo "== build (ThreadSanitizer)"
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTLSFRONT_TSAN=ON \
        -DTLSFRONT_WERROR=ON >/dev/null
  cmake --build build-tsan -j"$JOBS"
  echo "== ctest (ThreadSanitizer, label tsan)"
  # A report makes the process exit 66: tests see a failed exit and the report on stderr.
  TSAN="halt_on_error=0:exitcode=66:second_deadlock_stack=1"
  TSAN="$TSAN:suppressions=$ROOT/tests/tsan.supp"
  (cd build-tsan && TSAN_OPTIONS="$TSAN" ctest --output-on-failure -j2 --timeout 900 -L tsan) \
    || rc=1
fi

echo "== fuzz targets (clang + libFuzzer, bounded runs: at most 20 s each, about 2 min in all)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz_proxy_proto fuzz_http_rewrite \
      fuzz_client_hello fuzz_acme_json fuzz_config_json fuzz_storage_key
(cd build-fuzz && ctest --output-on-failure -L fuzz --timeout 300) || rc=1

if [ "$rc" -ne 0 ]; then
  echo "test.sh: FAILED"
else
  echo "test.sh: all tests passed"
fi
exit "$rc"
