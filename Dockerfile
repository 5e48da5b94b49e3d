# tlsfront container image: a TLS-terminating front proxy with on-demand ACME certificates.
#
#   docker build -t tlsfront .
#   docker run -d --name tlsfront -p 443:443 \
#       -e TLSFRONT_LISTEN=:443 -e TLSFRONT_BACKEND=app:8080 \
#       -e TLSFRONT_ALLOW='*.example.com' -v tlsfront-data:/var/lib/tlsfront tlsfront
#
# Two stages: the build stage installs the same packages as scripts/deps.sh and builds a
# Release binary without tests; the runtime stage carries only the shared libraries the
# binary links, CA certificates and the binary itself (no compiler, no package caches). The
# binary gets cap_net_bind_service so the unprivileged user can bind 443 and 80.
# Everything is configured by TLSFRONT_* variables or flags (docs/operations.md).

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/deps.sh /tmp/deps.sh
RUN bash /tmp/deps.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DTLSFRONT_TESTS=OFF \
        -DTLSFRONT_WERROR=OFF >/dev/null \
    && cmake --build /build -j"$(nproc)" \
    && install -D -m 0755 -s /build/tlsfront /out/tlsfront \
    && /out/tlsfront --version

FROM debian:12-slim
ENV DEBIAN_FRONTEND=noninteractive
# A fixed uid/gid so volume and certificate ownership can be set from the host.
RUN groupadd --system --gid 10001 tlsfront \
    && useradd --system --uid 10001 --gid tlsfront --no-create-home \
        --home-dir /var/lib/tlsfront --shell /usr/sbin/nologin tlsfront \
    && install -d -o tlsfront -g tlsfront -m 0750 /var/lib/tlsfront
COPY --from=build /out/tlsfront /usr/local/bin/tlsfront
# libcap2-bin is needed only for setcap: installed, used and purged in this one layer, so
# the file capability (an xattr on the binary) is all that remains of it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libuv1 libssl3 libcjson1 libpsl5 libhiredis0.14 ca-certificates libcap2-bin \
    && setcap cap_net_bind_service=+ep /usr/local/bin/tlsfront \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && tlsfront --version

ENV TLSFRONT_STORAGE=/var/lib/tlsfront \
    TLSFRONT_LISTEN=:443 \
    TLSFRONT_ADMIN=127.0.0.1:9901
VOLUME /var/lib/tlsfront
WORKDIR /var/lib/tlsfront
USER tlsfront:tlsfront
EXPOSE 443 80
STOPSIGNAL SIGTERM
# The image has no curl: bash's /dev/tcp asks the admin endpoint (TLSFRONT_ADMIN, loopback
# by default) for /healthz. With TLSFRONT_ADMIN set empty there is nothing to ask, and the
# check only reports the process as running.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD bash -c 'a="${TLSFRONT_ADMIN:-}"; [ -n "$a" ] || exit 0; h="${a%:*}"; h="${h#[}"; h="${h%]}"; exec 3<>"/dev/tcp/${h:-127.0.0.1}/${a##*:}" || exit 1; printf "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3; read -r _ code _ <&3; [ "$code" = 200 ]'
ENTRYPOINT ["tlsfront"]
