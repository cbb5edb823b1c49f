#!/usr/bin/env bash
# docker-smoke.sh - build detainer-watch's Docker image and prove the container serves /healthz.
#
# Usage (as root, from the repository root; .ci/run calls it this way with CI=true):
#   bash .ci/docker-smoke.sh
#
# This machine runs no Docker engine and reaches no image registry. So the script
#   1. installs docker.io, debootstrap, curl and ca-certificates from Debian if missing,
#   2. starts dockerd (or reuses a running one); if the default mode fails it falls back to
#      vfs storage, no iptables and host networking,
#   3. builds a local stand-in for python:X.Y-slim with debootstrap (Debian bookworm minbase plus
#      the host's pyenv CPython X.Y in /usr/local, as in the official image) unless it exists,
#   4. builds the project's image; pip inside the build reaches the package index the same way
#      the host does (see "pip" below),
#   5. runs the container with a named volume on /data, waits until /healthz answers 200 and
#      Docker's own HEALTHCHECK reports healthy, checks the process is not root and the SQLite
#      file lies on /data, prints the container's logs, stops it with `docker stop` (it must
#      log "stopped" and exit 0), and removes the container and volume.
# It exits non-zero on any failure. Safe to run again: it reuses installed packages, a running
# dockerd, the base image and Docker's layer cache. The whole run is bounded by SMOKE_TIMEOUT.
#
# pip: the build uses the index pip would use on the host. A plain https index (PyPI itself,
# reached through the machine's egress like on the host) needs nothing: the base image trusts
# the host's extra CA certificates. An http(s) index set on the host (env PIP_INDEX_URL /
# PIP_EXTRA_INDEX_URL / PIP_TRUSTED_HOST, or pip config global.index-url ...) is passed as a
# --build-arg; file:// indexes are skipped (not visible inside the build). If the index is on
# this host's loopback, the build runs with host networking.
set -euo pipefail

# ---- overall time bound: re-exec under timeout(1) once ------------------------------------------
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-1800}            # seconds for the whole run (base build included)
if [ -z "${_DW_SMOKE_INNER:-}" ] && command -v timeout >/dev/null; then
  export _DW_SMOKE_INNER=1
  rc=0; timeout -k 60 "$SMOKE_TIMEOUT" bash "$0" "$@" || rc=$?
  [ "$rc" = 124 ] && echo "FAIL: docker smoke exceeded SMOKE_TIMEOUT=${SMOKE_TIMEOUT}s" >&2
  exit "$rc"
fi

PY=${PY:-3.12}                                  # the X.Y in the Dockerfile's "FROM python:X.Y-slim"
IMAGE=${IMAGE:-detainer-watch:ci}
DOCKERFILE=${DOCKERFILE:-Dockerfile}
CONTAINER_PORT=${CONTAINER_PORT:-8080}          # the port the service listens on inside (0.0.0.0)
# The host port the check connects to: a free one unless given, so that whatever else listens
# on this machine (a dev server, a benchmark's nginx) cannot fail the run.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null || echo 18080
}
HOST_PORT=${HOST_PORT:-$(free_port)}
HEALTH_PATH=${HEALTH_PATH:-/healthz}
WAIT_S=${WAIT_S:-120}                           # seconds for migrate + startup + first healthy check
KEEP_DOCKERD=${KEEP_DOCKERD:-0}                 # 1: leave a dockerd we started running
DOCKERD_SAFE=${DOCKERD_SAFE:-0}                 # 1: skip the default dockerd, start the vfs/no-iptables/host-net one
BASE_CACHE=${BASE_CACHE:-}                      # optional: path of a saved base image (.tar.gz) to load / write
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE_TAG=local/python-base:${PY}-bookworm
ROOTFS=/tmp/dw-pybase-rootfs
NAME=dw-smoke
VOLUME_NAME=dw-smoke-data
TMPDF=/tmp/Dockerfile.dw-smoke
DOCKER=/usr/bin/docker                          # Debian's CLI: same API as its daemon, BuildKit built in
export DOCKER_BUILDKIT=1
NET=bridge                                      # the run's network (host in the fallback mode)
BUILD_NET=                                      # host: the build needs this host's loopback
DOCKERD_PID=

cd "$(dirname "$0")/.."                         # the repository root

step() { echo "=== [$(date +%T)] $*"; }
timed() { local s=$SECONDS; "$@"; echo "=== took $((SECONDS - s))s: $1"; }

cleanup() {
  local rc=$?
  if [ -x "$DOCKER" ] && $DOCKER info >/dev/null 2>&1; then
    $DOCKER rm -f "$NAME" >/dev/null 2>&1 || true
    $DOCKER volume rm -f "$VOLUME_NAME" >/dev/null 2>&1 || true
    $DOCKER image prune -f >/dev/null 2>&1 || true   # dangling layers of earlier builds of $IMAGE
    $DOCKER builder prune -f --keep-storage 3GB >/dev/null 2>&1 || true   # bound the layer cache on re-runs
  fi
  if [ -n "$DOCKERD_PID" ] && [ "$KEEP_DOCKERD" != 1 ]; then
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
  remove_rootfs
  rm -f "$TMPDF"
  if [ "$rc" = 0 ]; then echo "docker smoke: PASS"; else echo "docker smoke: FAIL (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

remove_rootfs() {   # never follow a mount left inside the chroot (debootstrap/chroot may leave /proc, /dev...)
  [ -e "$ROOTFS" ] || return 0
  grep -o " $ROOTFS/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$ROOTFS"
}

install_packages() {   # only what is missing: naming an installed package would upgrade it
  local pkgs=()
  [ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || pkgs+=(docker.io)
  command -v debootstrap >/dev/null || pkgs+=(debootstrap)
  command -v curl >/dev/null || pkgs+=(curl)
  [ -f /etc/ssl/certs/ca-certificates.crt ] || pkgs+=(ca-certificates)
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "installing: ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
}

start_dockerd() {   # args: extra dockerd flags
  /usr/sbin/dockerd "$@" >/tmp/dw-dockerd.log 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 40); do
    $DOCKER info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true
  DOCKERD_PID=; tail -20 /tmp/dw-dockerd.log; return 1
}

ensure_daemon() {
  if $DOCKER info >/dev/null 2>&1; then          # already running (e.g. an earlier run with KEEP_DOCKERD=1)
    echo "reusing the running dockerd"
    [ "$($DOCKER info -f '{{.Driver}}')" = vfs ] && NET=host
    $DOCKER network inspect bridge >/dev/null 2>&1 || NET=host
    return 0
  fi
  if [ "$DOCKERD_SAFE" != 1 ] && start_dockerd; then return 0; fi
  echo "dockerd: default mode failed or skipped; starting with vfs storage, no iptables, host networking" >&2
  # own data-root: BuildKit state left by an overlay2 daemon in /var/lib/docker breaks a vfs daemon there
  start_dockerd --storage-driver=vfs --iptables=false --bridge=none --data-root=/var/lib/docker-vfs
  NET=host
}

build_base() {
  remove_rootfs
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >/tmp/dw-debootstrap.log 2>&1 || { tail -30 /tmp/dw-debootstrap.log; return 1; }
  cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  # trust the same extra CAs as the host (needed behind a TLS-intercepting egress proxy)
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/" 2>/dev/null || true
  # like debian:bookworm-slim (the official image's base): no docs, man pages or translations (~50 MB)
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/groff/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/lintian/* "$ROOTFS"/usr/share/linda/*
  find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  chroot "$ROOTFS" sh -ec 'export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get -y -qq upgrade >/dev/null && update-ca-certificates >/dev/null
    apt-get clean && rm -rf /var/lib/apt/lists/*'
  : >"$ROOTFS/etc/resolv.conf"

  local v p f
  if command -v pyenv >/dev/null && v=$(pyenv latest "$PY" 2>/dev/null) && p=$(pyenv prefix "$v"); then
    # the host's pyenv CPython X.Y, copied to /usr/local like the official image (no tests, no static lib,
    # no host site-packages); it links only against bookworm libraries that python3 already pulled in
    tar -C "$p" --exclude="./lib/python$PY/test" --exclude="./lib/python$PY/site-packages/*" \
      --exclude='__pycache__' --exclude='*.a' --exclude='./bin/pip*' -cf - . | tar -C "$ROOTFS/usr/local" -xf -
    for f in "$ROOTFS"/usr/local/bin/*; do
      if [ -f "$f" ] && [ ! -L "$f" ] && [ "$(head -c2 "$f")" = '#!' ]; then sed -i "1s|^#!$p/bin/|#!/usr/local/bin/|" "$f"; fi
    done
    [ -e "$ROOTFS/usr/local/bin/python" ] || ln -s python3 "$ROOTFS/usr/local/bin/python"
    chroot "$ROOTFS" ldconfig
    chroot "$ROOTFS" /usr/local/bin/python3 -m ensurepip --default-pip >/dev/null
    # Debian's python3 was only there to pull in the shared libraries: keep every library (mark all
    # packages manual, so nothing is auto-removed), drop Debian's interpreter and pip (~60 MB)
    chroot "$ROOTFS" sh -ec 'export DEBIAN_FRONTEND=noninteractive
      apt-mark showauto | xargs -r apt-mark manual >/dev/null
      apt-get purge -y -qq $(dpkg-query -Wf "\${Package}\n" | grep -E "^(lib)?python3") >/dev/null
      rm -rf /usr/lib/python3 /usr/lib/python3.* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log'
  else
    echo "WARNING: no pyenv CPython $PY on this host; base uses Debian's python3 ($(chroot "$ROOTFS" python3 -V))" >&2
    chroot "$ROOTFS" python3 -m venv /usr/local   # /usr/local/bin/{python,python3,pip}, no PEP 668 error
  fi
  chroot "$ROOTFS" /usr/local/bin/python -c 'import ssl, sqlite3, ctypes, venv, hashlib, lzma, bz2, zlib, uuid, decimal, readline, sys; print("base:", sys.version)'
  chroot "$ROOTFS" /usr/local/bin/pip --version

  tar --numeric-owner -C "$ROOTFS" -c . | $DOCKER import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$BASE_TAG"
  remove_rootfs
}

ensure_base() {
  if ! $DOCKER image inspect "$BASE_TAG" >/dev/null 2>&1; then
    if [ -n "$BASE_CACHE" ] && [ -f "$BASE_CACHE" ]; then
      gunzip -c "$BASE_CACHE" | $DOCKER load
    else
      build_base
      if [ -n "$BASE_CACHE" ]; then $DOCKER save "$BASE_TAG" | gzip -1 >"$BASE_CACHE"; fi
    fi
  else
    echo "reusing $BASE_TAG"
  fi
  # the project's Dockerfile says FROM python:X.Y-slim; a local image of that name is used without pulling
  $DOCKER tag "$BASE_TAG" "python:${PY}-slim"
}

pip_setting() {   # env PIP_X, else pip config global.x / install.x (what pip on the host would use)
  local key=$2 val=${!1:-}
  if [ -z "$val" ] && command -v pip >/dev/null; then
    val=$(pip config get "global.$key" 2>/dev/null || pip config get "install.$key" 2>/dev/null || true)
  fi
  printf '%s' "$val"
}

PIP_ARGS=()
pip_build_args() {   # pass the host's http(s) index settings to the build; skip file:// ones
  local var key val u kept loopback=0
  for var in PIP_INDEX_URL:index-url PIP_EXTRA_INDEX_URL:extra-index-url PIP_TRUSTED_HOST:trusted-host; do
    key=${var#*:}; var=${var%%:*}
    val=$(pip_setting "$var" "$key"); kept=
    for u in $val; do
      case "$u" in
        file:*|/*) continue ;;
        *://127.*|*://localhost*|*://\[::1\]*) loopback=1 ;;
      esac
      kept="${kept:+$kept }$u"
    done
    if [ -n "$kept" ]; then PIP_ARGS+=(--build-arg "$var=$kept"); echo "pip: $var passed to the build"; fi
  done
  [ "${#PIP_ARGS[@]}" = 0 ] && echo "pip: no http(s) index configured on the host; the build uses pip's default index"
  [ "$loopback" = 1 ] && BUILD_NET=host && echo "pip: index on this host's loopback: building with host networking"
  return 0
}

build_app() {
  pip_build_args
  # a "# syntax=" line would make BuildKit pull a frontend image from Docker Hub; drop it
  sed '/^#[[:space:]]*syntax[[:space:]]*=/Id' "$DOCKERFILE" >"$TMPDF"
  local net=(); [ "$NET" = host ] || [ "$BUILD_NET" = host ] && net=(--network host)   # BuildKit: default|host|none
  $DOCKER build --progress=plain "${net[@]}" "${PIP_ARGS[@]}" -f "$TMPDF" -t "$IMAGE" .
  $DOCKER image ls "$IMAGE"
}

run_app() {
  local url port ok='' health='' st
  $DOCKER rm -f "$NAME" >/dev/null 2>&1 || true
  $DOCKER volume rm -f "$VOLUME_NAME" >/dev/null 2>&1 || true
  # faster HEALTHCHECK than the image's 30s interval, so its verdict comes within WAIT_S
  local run=(run -d --name "$NAME" -v "$VOLUME_NAME:/data" --health-interval 3s --health-start-period 60s)
  if [ "$NET" = host ]; then
    # the service binds 0.0.0.0 on the host itself here: use HOST_PORT inside too, so no dev server on 8080 clashes
    port=$HOST_PORT
    $DOCKER "${run[@]}" --network host -e "DW_HTTP_PORT=$port" "$IMAGE" >/dev/null
  else
    port=$CONTAINER_PORT
    # The shipped config's feeds are internet URLs: with the container's resolver on its own
    # loopback their look-ups fail inside it, so the smoke test sends nothing off this machine
    # (they fail anyway here; the polls log the errors). Host networking shares the host's.
    $DOCKER "${run[@]}" --dns 127.0.0.1 -p "127.0.0.1:$HOST_PORT:$CONTAINER_PORT" "$IMAGE" >/dev/null
  fi
  url="http://127.0.0.1:$HOST_PORT$HEALTH_PATH"
  for _ in $(seq 1 "$WAIT_S"); do
    if [ -z "$ok" ] && curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; then ok=1; fi
    st=$($DOCKER inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$NAME" 2>/dev/null || echo gone)
    [ "$st" = healthy ] && health=1
    [ -n "$ok" ] && [ -n "$health" ] && break
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ] || break
    sleep 1
  done
  echo "--- container logs (last 60 lines)"
  $DOCKER logs "$NAME" 2>&1 | tail -60
  echo "--- end of container logs"
  if [ "$($DOCKER inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then
    echo "FAIL: container stopped: $($DOCKER inspect -f 'exit code {{.State.ExitCode}} {{.State.Error}}' "$NAME" 2>/dev/null)" >&2
    return 1
  fi
  if [ -z "$ok" ]; then
    echo "FAIL: no 200 from $url within ${WAIT_S}s" >&2
    if $DOCKER exec "$NAME" python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port$HEALTH_PATH', timeout=4)" 2>/dev/null; then
      echo "hint: $HEALTH_PATH answers on 127.0.0.1 inside the container but not from outside: the service binds loopback, not DW_HTTP_HOST=0.0.0.0" >&2
    fi
    $DOCKER exec "$NAME" sh -c 'cat /proc/net/tcp /proc/net/tcp6 2>/dev/null' | awk 'NR>1 && $4=="0A" {print "listening (hex addr:port):", $2}' >&2 || true
    return 1
  fi
  curl -sS -i --max-time 5 "$url" | head -1
  if [ -z "$health" ]; then
    echo "FAIL: Docker HEALTHCHECK not healthy: $($DOCKER inspect -f '{{json .State.Health}}' "$NAME")" >&2
    return 1
  fi
  echo "HEALTHCHECK: healthy"
  local uid
  uid=$($DOCKER exec "$NAME" id -u)
  if [ "$uid" = 0 ]; then echo "FAIL: the service runs as root" >&2; return 1; fi
  echo "user: $($DOCKER exec "$NAME" id -un) (uid $uid)"
  if ! $DOCKER exec "$NAME" test -s /data/detainer-watch.db; then
    echo "FAIL: no SQLite database at /data/detainer-watch.db" >&2
    $DOCKER exec "$NAME" ls -la /data >&2 || true
    return 1
  fi
  echo "database: $($DOCKER exec "$NAME" ls -la /data | tail -n +2 | awk '{print $NF, $5}' | grep -v '^\.' | tr '\n' ' ')"
  echo "OK: container serves HTTP on $url"
  # docker stop sends SIGTERM: the service shuts its scheduler down, logs "stopped", exits 0
  local code
  $DOCKER stop -t 30 "$NAME" >/dev/null
  code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$NAME")
  if [ "$code" != 0 ] || ! $DOCKER logs "$NAME" 2>&1 | tail -3 | grep -q "INFO service: stopped"; then
    echo "FAIL: docker stop: exit code $code (want 0 after \"stopped\" in the log)" >&2
    $DOCKER logs "$NAME" 2>&1 | tail -10 >&2
    return 1
  fi
  echo "OK: docker stop: the service stopped cleanly (exit 0)"
}

step "install packages";  timed install_packages
step "start dockerd";     timed ensure_daemon
echo "network mode: $NET"
step "base image";        timed ensure_base
step "docker build";      timed build_app
step "run + HTTP check";  timed run_app
$DOCKER image prune -f >/dev/null 2>&1 || true
$DOCKER image ls
du -sh /var/lib/docker* 2>/dev/null || true
