#!/usr/bin/env bash
# bench/run.sh: tlsfront side by side with HAProxy, hitch, nginx (http and stream) and Caddy,
# against the crypto floor. Installs what it needs from Debian, builds tlsfront (Release) and
# the bench's own C tools (loadgen, backend, floor), then runs bench/bench.py, which starts
# everything on loopback, measures, stops what it started, and writes
# bench/results/latest-{quick,full}.{md,json} (and, in full mode, the table in
# docs/benchmarks.md); a run of some figures, rows or figure 6 parts writes
# bench/results/partial-{quick,full}.{md,json} instead (not kept by git).
#
#   bench/run.sh [--quick] [--check] [--head] [--figs 1,3] [--rows tlsfront,nginx]
#                [--rounds N] [--many startup,hot,cold,callgrind] [--no-docs] [--keep]
#
#   --quick   figures 1-5 and 8, 3 rounds, under 3 minutes (full mode: all 8, 5 rounds, < 15)
#   --check   exit 1 when tlsfront misses one of issue 5's target ratios
#   --head    measure the committed HEAD (git archive into the build dir), not the work tree
# Exit status: 0 ok, 1 a target missed (with --check), 2 the bench itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${TLSFRONT_BENCH_BUILD:-$ROOT/build-bench}
QUICK=0
DOCS=1
HEAD=0
ARGS=()
for a in "$@"; do
  case $a in
  --quick) QUICK=1; ARGS+=("$a") ;;
  --no-docs) DOCS=0 ;;
  --head) HEAD=1 ;;
  -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
  *) ARGS+=("$a") ;;
  esac
done

bash scripts/deps.sh haproxy hitch nginx libnginx-mod-stream caddy nghttp2-client wrk \
  linux-perf valgrind >&2

[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 cores (server on 0, load on 1)" >&2; exit 2; }

SRC=$ROOT
if [ $HEAD -eq 1 ]; then
  SRC=$BUILD/src-head
  rm -rf "$SRC" && mkdir -p "$SRC"
  git -C "$ROOT" archive HEAD | tar -x -C "$SRC"
  export TLSFRONT_BENCH_REV="$(git -C "$ROOT" rev-parse --short HEAD) (HEAD, clean)"
fi
echo "bench: building tlsfront (Release) from $SRC in $BUILD" >&2
# A build folder configured from the other source (--head or not) is configured afresh.
if [ -f "$BUILD/tlsfront/CMakeCache.txt" ] &&
   ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$SRC" "$BUILD/tlsfront/CMakeCache.txt"; then
  rm -rf "$BUILD/tlsfront"
fi
# -g only adds symbols (for perf and callgrind); the code is the same as a plain Release
cmake -S "$SRC" -B "$BUILD/tlsfront" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-g -DTLSFRONT_TESTS=OFF >/dev/null
cmake --build "$BUILD/tlsfront" -j"$(nproc)" --target tlsfront >/dev/null
BIN=$BUILD/bench-bin
mkdir -p "$BIN"
CFLAGS=(-std=gnu11 -O2 -g -Wall -Wextra -Wshadow)
gcc "${CFLAGS[@]}" -o "$BIN/loadgen" bench/loadgen.c bench/lg.c -lssl -lcrypto
gcc "${CFLAGS[@]}" -o "$BIN/backend" bench/backend.c
gcc "${CFLAGS[@]}" -o "$BIN/floor" bench/floor.c -lssl -lcrypto

if [ $QUICK -eq 0 ] && [ $DOCS -eq 1 ]; then
  ARGS+=(--docs "$ROOT/docs/benchmarks.md")
fi
exec python3 bench/bench.py --bin "$BIN" --tlsfront "$BUILD/tlsfront/tlsfront" ${ARGS[@]+"${ARGS[@]}"}
