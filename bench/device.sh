#!/usr/bin/env bash
# bench/device.sh: the multi-core figure (bench/multicore.py, figure 9) on a machine where
# nothing is installed (the lent 16-core box: no compiler, no nginx, no Python). `pack` runs
# here and puts into one folder everything the run needs, Debian-built: tlsfront, nginx and
# its stream module, HAProxy, taskset, openssl (certificates are made there), Python with
# the part of its standard library the bench imports, bench/'s C tools, every shared library
# they load, and the loader; each program is started through wrappers as
# `ld.so --library-path LIB BIN`, so nothing of the other machine's /usr is used. `run`
# runs there and hands its arguments to bench/multicore.py.
#
#   bench/device.sh pack [DIR]                 # here; DIR defaults to build-device (ignored by git)
#   bench/device.sh run [DIR] -- server --workers 1,2,4,8 --server-cores 0-7 \
#       --client-cores 8-15 --peers nginx,haproxy --rounds 3 --n 20000 --conc 256
#   bench/device.sh check [DIR]                # here: the bundle alone, with the system's
#                                              # copies hidden (a private mount namespace)
# The folder is carried to the device as an ignored path (the run tool's carry).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
what=${1:?usage: bench/device.sh pack|run|check [DIR] [-- multicore.py args]}
shift
D=build-device
if [ $# -gt 0 ] && [ "$1" != "--" ]; then D=$1; shift; fi
[ "${1:-}" = "--" ] && shift
case "$D" in /*) ;; *) D="$ROOT/$D" ;; esac

PYVER=3.11
PROGS=(/usr/sbin/nginx /usr/sbin/haproxy /usr/bin/taskset /usr/bin/openssl
       "/usr/bin/python$PYVER")

# Copy the shared libraries file (an executable or a library) loads into $D/lib.
copy_libs() {
  ldd "$1" | awk '/=> \// { print $3 }' | while read -r lib; do
    [ -e "$D/lib/$(basename "$lib")" ] || cp -L "$lib" "$D/lib/"
  done
}

# $D/bin/NAME (or $3/NAME): starts $D/real/NAME through the carried loader.
wrapper() {
  local name=$1 extra=${2:-} dir=${3:-$D/bin}
  cat >"$dir/$name" <<EOF
#!/bin/sh
D=\$(cd "\$(dirname "\$0")/.." && pwd)
$extra
exec "\$D/lib/ld.so" --library-path "\$D/lib" "\$D/real/$name" "\$@"
EOF
  chmod +x "$dir/$name"
}

pack() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" --target tlsfront >/dev/null
  rm -rf "$D"
  mkdir -p "$D"/{bin,real,lib/nginx-modules,tools,py/lib}
  cp build/tlsfront "$D/real/tlsfront"
  for p in "${PROGS[@]}"; do cp -L "$p" "$D/real/$(basename "$p")"; done
  mv "$D/real/python$PYVER" "$D/real/python3"
  # bench/'s C tools, built as multicore.py builds them
  TLSFRONT_BENCH_BIN="$D/real" python3 -c \
    'import sys; sys.path.insert(0, "bench"); import multicore; multicore.build_tools()'
  mv "$D/real/lockcount.so" "$D/tools/"
  cp /usr/lib/nginx/modules/ngx_stream_module.so "$D/lib/nginx-modules/"
  strip --strip-debug "$D"/real/* "$D/lib/nginx-modules/"*.so "$D/tools/lockcount.so"
  # Python's standard library without the packages the bench never imports, and of its
  # C modules only those it loads (the rest are built into the interpreter)
  local skip=(__pycache__ test idlelib tkinter turtledemo ensurepip lib2to3 pydoc_data
              dist-packages site-packages "config-*" distutils asyncio email xml
              multiprocessing unittest sqlite3 curses dbm ctypes venv wsgiref xmlrpc
              concurrent html http urllib logging lib-dynload turtle.py pydoc.py)
  tar -C /usr/lib -cf - "${skip[@]/#/--exclude=python$PYVER/}" --exclude=__pycache__ \
      "python$PYVER" | tar -C "$D/py/lib" -xf -
  mkdir -p "$D/py/lib/python$PYVER/lib-dynload"
  for m in _json _decimal _bz2 _lzma; do
    cp /usr/lib/python$PYVER/lib-dynload/$m.cpython-*.so "$D/py/lib/python$PYVER/lib-dynload/"
  done
  for f in "$D"/real/* "$D/lib/nginx-modules/"*.so "$D/tools/lockcount.so" \
           "$D/py/lib/python$PYVER/lib-dynload/"*.so; do
    copy_libs "$f"
  done
  cp -L /lib64/ld-linux-x86-64.so.2 "$D/lib/ld.so"
  for p in "$D"/real/*; do
    n=$(basename "$p")
    case "$n" in
      python3) wrapper python3 'export PYTHONHOME="$D/py" PYTHONDONTWRITEBYTECODE=1' ;;
      loadgen|backend|floor) wrapper "$n" "" "$D/tools" ;;
      *) wrapper "$n" ;;
    esac
  done
  du -sh "$D" | awk '{ print "bench/device.sh: packed " $2 " (" $1 ")" }'
}

run() {
  [ -x "$D/bin/python3" ] || { echo "bench/device.sh: no bundle in $D (run pack here)" >&2; exit 2; }
  export PATH="$D/bin:$PATH" TLSFRONT_BENCH_BIN="$D/tools" TLSFRONT_BENCH_PREBUILT=1
  export TLSFRONT_NGINX_MODULES="$D/lib/nginx-modules"
  exec "$D/bin/python3" bench/multicore.py "$@" --tlsfront "$D/bin/tlsfront"
}

# Run a short multicore.py server round from the bundle with the system's copies of what it
# carries hidden, so that a missing library or module fails here, not on the device.
check() {
  local hide=(/usr/sbin/nginx /usr/sbin/haproxy /usr/bin/taskset /usr/bin/openssl
              "/usr/bin/python$PYVER")
  for l in libuv.so.1 libssl.so.3 libcrypto.so.3 libhiredis.so.0.14 libcjson.so.1 \
           liblua5.3.so.0; do
    [ -e "/usr/lib/x86_64-linux-gnu/$l" ] && hide+=("/usr/lib/x86_64-linux-gnu/$l")
  done
  local mounts="set -e; "
  for dir in "/usr/lib/python$PYVER" /usr/lib/nginx/modules; do
    mounts+="mount -t tmpfs none '$dir'; "
  done
  # (not libpcre2: the system's coreutils load it, through libselinux)
  for h in "${hide[@]}"; do mounts+="mount --bind /dev/null '$h'; "; done
  unshare -m --propagation private bash -c "$mounts exec bash '$ROOT/bench/device.sh' run \
    '$D' -- server --workers 1,2 --rounds 1 --n 400 --conc 16 --peers nginx,haproxy \
    --server-cores 0 --client-cores 1 --clients 2"
}

case "$what" in
  pack) pack ;;
  run) run "$@" ;;
  check) check ;;
  *) echo "bench/device.sh: pack, run or check" >&2; exit 2 ;;
esac
