#!/usr/bin/env bash
# compose-smoke.sh - run docker-compose.yml with `up --scale worker=3` and prove the stack works.
#
# Usage (as root, from anywhere; several minutes, so it is not part of `make test` or .ci/run):
#   bash .ci/compose-smoke.sh
#
# This machine runs no Docker engine and reaches no image registry, so neither postgres:16 nor
# python:3.12-slim can be pulled. The script
#   1. runs .ci/docker-smoke.sh with KEEP_DOCKERD=1 IMAGE=detainer-watch: that starts dockerd (or
#      reuses a running one; vfs / no-iptables / host-network fallback), builds the debootstrap
#      stand-in for python:3.12-slim, builds the project image under the name the compose file
#      uses (`detainer-watch`) and proves that image serves /healthz on its own;
#   2. builds a local stand-in for the official postgres image (see build_pg_image below):
#      Debian bookworm's PostgreSQL, which is 15, not 16, with a small entrypoint that honours
#      the part of the official image's contract docker-compose.yml relies on. The compose file
#      takes it through DW_POSTGRES_IMAGE (default: the official postgres:16);
#   3. `docker-compose up -d --scale worker=3` with the secrets in the environment (as the
#      README says), then checks: migrate exited 0, /healthz and /readyz on the api answer 200,
#      three worker containers run, /api/v1/feeds lists the config's feeds (and 401 without the
#      token), the workers log polls (the shipped feeds are internet URLs this machine cannot
#      reach: those polls log errors), and a feed served from a container on the compose network
#      is polled with HTTP 200 and its on-beat items become hits;
#   4. `docker-compose down -v`, removes the feed container, and stops dockerd if this run
#      started it (set KEEP_DOCKERD=1 to keep it). Images stay, for Docker's cache on re-runs.
# It exits non-zero on the first failed check and prints the stack's logs. Bounded by
# COMPOSE_SMOKE_TIMEOUT seconds.
set -euo pipefail

COMPOSE_SMOKE_TIMEOUT=${COMPOSE_SMOKE_TIMEOUT:-2400}
if [ -z "${_DW_COMPOSE_INNER:-}" ] && command -v timeout >/dev/null; then
  export _DW_COMPOSE_INNER=1
  rc=0; timeout -k 60 "$COMPOSE_SMOKE_TIMEOUT" bash "$0" "$@" || rc=$?
  [ "$rc" = 124 ] && echo "FAIL: compose smoke exceeded COMPOSE_SMOKE_TIMEOUT=${COMPOSE_SMOKE_TIMEOUT}s" >&2
  exit "$rc"
fi

WORKERS=${WORKERS:-3}
PROJECT=${PROJECT:-dw-compose-smoke}          # docker-compose -p: its own containers, network, volume
DW_PORT=${DW_PORT:-18081}                      # the api's host port (the compose file's default is 8080)
PG_IMAGE=${PG_IMAGE:-local/postgres:15-bookworm}
PY=${PY:-3.12}
BASE_TAG=local/python-base:${PY}-bookworm      # built by docker-smoke.sh
APP_IMAGE=detainer-watch                       # `image:` in docker-compose.yml
KEEP_DOCKERD=${KEEP_DOCKERD:-0}
WAIT_S=${WAIT_S:-120}
DOCKER=/usr/bin/docker                         # Debian's CLI, as docker-smoke.sh uses
COMPOSE=(docker-compose -p "$PROJECT")
FEED_NAME=$PROJECT-feedhost
FEED_URL=http://feedhost:8000/feed.xml
EXTRA_FEEDS=${EXTRA_FEEDS:-47}                 # more URLs of that feed (feed.xml?n=K), so all workers claim some
WORK=$(mktemp -d /tmp/dw-compose-smoke.XXXXXX)
DOCKERD_PID=                                   # set when this run started dockerd
STACK_UP=
VOLS_BEFORE=

cd "$(dirname "$0")/.."                        # the repository root: docker-compose.yml is here

step() { echo "=== [$(date +%T)] $*"; }
timed() { local s=$SECONDS; "$@"; echo "=== took $((SECONDS - s))s: $1"; }
run() { echo "+ $*"; "$@"; }                   # show every command that matters, as run
fail() { echo "FAIL: $*" >&2; return 1; }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && [ -n "$STACK_UP" ]; then
    echo "--- docker-compose ps / logs (failure)"
    "${COMPOSE[@]}" ps
    "${COMPOSE[@]}" logs --no-color --tail 40
  fi
  if $DOCKER info >/dev/null 2>&1; then
    $DOCKER rm -fv "$FEED_NAME" >/dev/null 2>&1   # -v: its anonymous /data volume (the image's VOLUME)
    if [ -n "$STACK_UP" ]; then
      step "tear down"
      local s=$SECONDS c
      run "${COMPOSE[@]}" stop            # SIGTERM; workers give back their leases
      echo "stop took $((SECONDS - s))s"
      for c in $("${COMPOSE[@]}" ps -q worker); do
        echo "$($DOCKER inspect -f '{{.Name}} exit={{.State.ExitCode}}' "$c"): $($DOCKER logs "$c" 2>&1 | grep -E 'released the leases|stopp' | tail -2 | tr '\n' ' ')"
      done
      run "${COMPOSE[@]}" down -v
      local vols
      vols=$($DOCKER volume ls -q | wc -l)
      echo "docker volumes: $VOLS_BEFORE before up, $vols after down -v"
      if [ "$vols" != "$VOLS_BEFORE" ] && [ "$rc" = 0 ]; then echo "FAIL: volumes left behind" >&2; rc=1; fi
    fi
  fi
  if [ -n "$DOCKERD_PID" ] && [ "$KEEP_DOCKERD" != 1 ]; then
    step "stop the dockerd this run started (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then echo "compose smoke: PASS"; else echo "compose smoke: FAIL (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# ---- 1. dockerd, python:3.12-slim stand-in and the project image: docker-smoke.sh does all three --
app_image() {
  local had=0
  $DOCKER info >/dev/null 2>&1 && had=1
  run env KEEP_DOCKERD=1 IMAGE="$APP_IMAGE" bash .ci/docker-smoke.sh
  if [ "$had" = 0 ]; then
    DOCKERD_PID=$(cat /var/run/docker.pid)     # started by docker-smoke.sh for us: ours to stop
    echo "dockerd started for this run: pid $DOCKERD_PID"
  else
    echo "dockerd was already running: left running at the end"
  fi
  echo "storage driver: $($DOCKER info -f '{{.Driver}}'); bridge network: $($DOCKER network inspect bridge >/dev/null 2>&1 && echo yes || echo no)"
  $DOCKER image ls "$APP_IMAGE"
}

# ---- 2. a stand-in for the official postgres image ----------------------------------------------
# From the same debootstrap bookworm base (it also carries the base's CPython, unused here) plus
# Debian's postgresql-15 and gosu. The entrypoint implements what docker-compose.yml relies on:
#   - POSTGRES_PASSWORD (required on an empty volume, as in the official image), POSTGRES_USER
#     (default postgres) and POSTGRES_DB (default: the user name);
#   - on an empty data volume (PGDATA=/var/lib/postgresql/data) initdb as POSTGRES_USER with that
#     password, UTF8, then CREATE DATABASE POSTGRES_DB on a server listening on no TCP address;
#   - then `postgres` as the postgres user (gosu), listening on 0.0.0.0:5432 (listen_addresses
#     '*'), trust on the local socket, scram-sha-256 passwords for every TCP client;
#   - pg_isready on PATH for the healthcheck; STOPSIGNAL SIGINT (fast shutdown), as upstream.
# Not implemented: /docker-entrypoint-initdb.d scripts, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD, *_FILE secrets and arbitrary --user; the compose file uses none.
build_pg_image() {
  local ctx=$WORK/pg net=()
  mkdir -p "$ctx"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the official postgres image's entrypoint (see .ci/compose-smoke.sh).
set -eu
[ "${1:-}" = postgres ] || exec "$@"
PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"; chmod 2775 /var/run/postgresql
  exec gosu postgres "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "Error: Database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD)." >&2
    exit 1
  fi
  pwfile=$(mktemp); printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    echo 'CREATE DATABASE :"db";' | psql -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" -U "$POSTGRES_USER" -d postgres
    pg_ctl -D "$PGDATA" -m fast -w stop
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@" -D "$PGDATA"
EOF
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_TAG
# no main cluster from the package, no service start attempts during the install
RUN set -eux; printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \\
    mkdir -p /etc/postgresql-common/createcluster.d; \\
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main-cluster.conf; \\
    apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 gosu; \\
    apt-get clean; rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d; \\
    mkdir -p /var/run/postgresql /var/lib/postgresql/data; chown postgres:postgres /var/run/postgresql; \\
    chmod 1777 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:\$PATH PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh && postgres --version && pg_isready --version
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
EOF
  [ "$($DOCKER info -f '{{.Driver}}')" = vfs ] && net=(--network host)   # docker-smoke.sh's fallback mode
  DOCKER_BUILDKIT=1 run $DOCKER build --progress=plain "${net[@]}" -t "$PG_IMAGE" "$ctx"
  $DOCKER image ls "$PG_IMAGE"
}

# ---- 3. the stack ---------------------------------------------------------------------------------
http_code() { curl -s -o "$WORK/body" -w '%{http_code}' --max-time 5 "$@" || true; }

compose_up() {
  # the secrets by environment, as the README says; the compose file's other defaults unchanged
  POSTGRES_PASSWORD=$(openssl rand -hex 16); DW_API_TOKEN=$(openssl rand -hex 16)
  export POSTGRES_PASSWORD DW_API_TOKEN DW_PORT DW_POSTGRES_IMAGE=$PG_IMAGE
  echo "env: POSTGRES_PASSWORD=<random> DW_API_TOKEN=<random> DW_PORT=$DW_PORT DW_POSTGRES_IMAGE=$PG_IMAGE"
  run "${COMPOSE[@]}" config -q
  VOLS_BEFORE=$($DOCKER volume ls -q | wc -l)
  STACK_UP=1
  local s=$SECONDS
  # depends_on waits: db healthy (pg_isready) -> migrate exits 0 -> workers and api
  run "${COMPOSE[@]}" up -d --scale "worker=$WORKERS"
  echo "up -d returned after $((SECONDS - s))s"
}

check_stack() {
  local mid code n path
  mid=$("${COMPOSE[@]}" ps -q migrate)
  code=$($DOCKER inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$mid")
  echo "migrate container: $code"
  echo "--- migrate logs"; "${COMPOSE[@]}" logs --no-color migrate; echo "---"
  [ "$code" = "exited exit=0" ] || fail "migrate did not exit 0"

  for path in /healthz /readyz; do
    code=000
    for _ in $(seq 1 "$WAIT_S"); do
      code=$(http_code "http://127.0.0.1:$DW_PORT$path"); [ "$code" = 200 ] && break; sleep 1
    done
    echo "GET $path -> HTTP $code $(cat "$WORK/body" 2>/dev/null)"
    [ "$code" = 200 ] || fail "$path did not answer 200"
  done

  echo "db: $("${COMPOSE[@]}" exec -T db postgres --version); $("${COMPOSE[@]}" exec -T db pg_isready -U dw -d detainerwatch)"
  echo "db log: $("${COMPOSE[@]}" logs --no-color db | grep -E 'init process complete|listening on IPv4' | sed 's/^db_1 *| //' | tr '\n' ' ')"
  # password auth over TCP: the right password got migrate in; a wrong one must be refused
  if "${COMPOSE[@]}" exec -T db psql "postgresql://dw:wrong@127.0.0.1:5432/detainerwatch" -c 'select 1' >"$WORK/psql" 2>&1; then
    fail "the database accepted a wrong password over TCP"
  fi
  echo "wrong password over TCP: $(head -1 "$WORK/psql")"

  local api st=''
  api=$("${COMPOSE[@]}" ps -q api)
  for _ in $(seq 1 "$WAIT_S"); do   # the image's HEALTHCHECK: every 30 s, on /healthz
    st=$($DOCKER inspect -f '{{.State.Health.Status}}' "$api"); [ "$st" = healthy ] && break; sleep 1
  done
  echo "api container HEALTHCHECK: $st"
  [ "$st" = healthy ] || fail "the api container is not healthy"

  run "${COMPOSE[@]}" ps
  n=$($DOCKER ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter label=com.docker.compose.service=worker --filter status=running | wc -l)
  echo "running worker containers: $n"
  [ "$n" = "$WORKERS" ] || fail "expected $WORKERS running workers, found $n"

  code=$(http_code "http://127.0.0.1:$DW_PORT/api/v1/feeds")
  echo "GET /api/v1/feeds without the token -> HTTP $code"
  [ "$code" = 401 ] || fail "/api/v1/feeds without the token answered $code, not 401"
  code=$(http_code -H "Authorization: Bearer $DW_API_TOKEN" "http://127.0.0.1:$DW_PORT/api/v1/feeds")
  n=$(jq '.items | length' "$WORK/body")
  echo "GET /api/v1/feeds with the token -> HTTP $code, $n feeds, e.g. $(jq -c '.items[0] | {url, name}' "$WORK/body")"
  [ "$code" = 200 ] && [ "$n" -gt 0 ] || fail "/api/v1/feeds did not list feeds"
}

# A feed served from a container on the compose network, so one poll can succeed here.
serve_feed() {
  local now code
  now=$(date -R)
  mkdir -p "$WORK/feed"
  cat >"$WORK/feed/feed.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>compose smoke feed</title><link>http://feedhost:8000/</link><description>served by .ci/compose-smoke.sh</description>
<item><title>Sheriff declines ICE detainer request, releases man from county jail</title>
<link>http://feedhost:8000/sheriff-declines-detainer-$$</link><guid>compose-smoke-1-$$</guid><pubDate>$now</pubDate>
<description>The Hampden County Sheriff's Office declined an Immigration and Customs Enforcement detainer request on Tuesday and released a man held at the county jail, saying the state's Trust Act bars holding people past their release date for ICE.</description></item>
<item><title>Council passes welcoming city ordinance limiting cooperation with ICE</title>
<link>http://feedhost:8000/welcoming-city-$$</link><guid>compose-smoke-2-$$</guid><pubDate>$now</pubDate>
<description>The Somerville City Council voted 9-2 on Thursday to adopt a welcoming city ordinance that bars police from honoring ICE detainers without a judicial warrant.</description></item>
<item><title>Ice storm closes schools across the county</title>
<link>http://feedhost:8000/ice-storm-$$</link><guid>compose-smoke-3-$$</guid><pubDate>$now</pubDate>
<description>An ice storm left roads glazed on Monday and the county closed every school; crews salted highways overnight.</description></item>
</channel></rss>
EOF
  chmod 755 "$WORK" "$WORK/feed"; chmod 644 "$WORK/feed/feed.xml"
  local net
  net=$($DOCKER network ls -q --filter "label=com.docker.compose.project=$PROJECT" | head -1)
  net=$($DOCKER network inspect -f '{{.Name}}' "$net")   # the stack's default network
  run $DOCKER run -d --name "$FEED_NAME" --network "$net" --network-alias feedhost \
    -v "$WORK/feed:/feed:ro" "$APP_IMAGE" python -m http.server 8000 --directory /feed >/dev/null

  # The API refuses private addresses (config: network.allow_private_addresses = false) ...
  code=$(http_code -H "Authorization: Bearer $DW_API_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"url\": \"$FEED_URL\"}" "http://127.0.0.1:$DW_PORT/api/v1/feeds")
  echo "POST /api/v1/feeds {url: $FEED_URL} -> HTTP $code $(cat "$WORK/body")"
  [ "$code" = 422 ] || fail "the API accepted a feed on a private address (HTTP $code)"
  # ... so it is added with the CLI in worker 1, allowing private addresses for that one command
  run "${COMPOSE[@]}" exec -T -e DW_NETWORK_ALLOW_PRIVATE_ADDRESSES=true worker \
    detainer-watch feeds add "$FEED_URL" --name "compose smoke feed" --no-discover
  # More feeds than one worker claims at a time (2 x polling.concurrency = 16), all due at once:
  # the same document under EXTRA_FEEDS more URLs (http.server ignores the query), by OPML import.
  local k
  {
    echo '<?xml version="1.0" encoding="UTF-8"?><opml version="2.0"><head><title>compose smoke</title></head><body>'
    for k in $(seq 1 "$EXTRA_FEEDS"); do echo "<outline type=\"rss\" text=\"smoke $k\" xmlUrl=\"$FEED_URL?n=$k\"/>"; done
    echo '</body></opml>'
  } >"$WORK/feeds.opml"
  echo "+ ${COMPOSE[*]} exec -T -e DW_NETWORK_ALLOW_PRIVATE_ADDRESSES=true worker sh -c 'cat >/tmp/smoke.opml && detainer-watch feeds import /tmp/smoke.opml' <feeds.opml"
  "${COMPOSE[@]}" exec -T -e DW_NETWORK_ALLOW_PRIVATE_ADDRESSES=true worker \
    sh -c 'cat >/tmp/smoke.opml && detainer-watch feeds import /tmp/smoke.opml' <"$WORK/feeds.opml"
}

check_polls() {
  local line='' n c name total=0 code want=$((EXTRA_FEEDS + 1)) polls=0 distinct=0
  for _ in $(seq 1 "$((WAIT_S + 60))"); do    # the feeds are due at once; a worker's poll tick is 30 s
    "${COMPOSE[@]}" logs --no-color worker 2>/dev/null \
      | grep -oE "poll $FEED_URL(\?n=[0-9]+)?: ok \(HTTP 200\)" >"$WORK/ok" || true
    polls=$(wc -l <"$WORK/ok"); distinct=$(sort -u "$WORK/ok" | wc -l)
    [ "$distinct" -ge "$want" ] && break; sleep 1
  done
  line=$("${COMPOSE[@]}" logs --no-color worker | grep -F "poll $FEED_URL: ok (HTTP 200)" || true)
  echo "successful poll: $line"
  [ -n "$line" ] || fail "no worker logged a successful poll of $FEED_URL"
  echo "feeds on feedhost polled with HTTP 200: $distinct of $want, in $polls polls"
  [ "$distinct" = "$want" ] || fail "only $distinct of the $want feeds on feedhost were polled"
  [ "$polls" = "$want" ] || fail "a feed was polled twice ($polls polls of $want feeds)"
  for c in $($DOCKER ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=worker); do
    name=$($DOCKER inspect -f '{{.Name}}' "$c"); name=${name#/}
    $DOCKER logs "$c" >"$WORK/log" 2>&1   # to a file: grep -m1 on a pipe trips pipefail (SIGPIPE)
    n=$(grep -c ' service.pipeline: poll ' "$WORK/log" || true)
    total=$((total + n))
    echo "$name: $(grep -m1 -o 'worker [^ ]*: [0-9]* feeds.*' "$WORK/log" || echo 'no start line')"
    echo "$name: $n poll lines ($(grep -c " service.pipeline: poll $FEED_URL" "$WORK/log" || true) of feedhost feeds, $(grep -c ' service.pipeline: poll https://' "$WORK/log" || true) of the shipped feeds); first: $(grep -m1 ' service.pipeline: poll ' "$WORK/log" || echo none)"
  done
  [ "$total" -gt 1 ] || fail "the workers logged $total polls"
  # Each worker's own /metrics (DW_HTTP_WORKER_METRICS_PORT=9108 in the compose file), read
  # from inside its container: the polls it counted.
  for c in $($DOCKER ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=worker); do
    name=$($DOCKER inspect -f '{{.Name}}' "$c"); name=${name#/}
    polls=$($DOCKER exec "$c" python -c "import urllib.request as u; t = u.urlopen('http://127.0.0.1:9108/metrics', timeout=5).read().decode(); print(sum(float(l.rsplit(' ', 1)[1]) for l in t.splitlines() if l.startswith('dw_polls_total{')))") \
      || fail "$name: no /metrics on port 9108"
    echo "$name: /metrics on :9108 counts $polls polls"
  done
  code=$(http_code -H "Authorization: Bearer $DW_API_TOKEN" "http://127.0.0.1:$DW_PORT/api/v1/hits")
  echo "GET /api/v1/hits -> HTTP $code: $(jq -c '[.items[] | {title, event_type, score}]' "$WORK/body" 2>/dev/null)"
  [ "$code" = 200 ] || fail "/api/v1/hits answered $code"
  code=$(http_code -H "Authorization: Bearer $DW_API_TOKEN" "http://127.0.0.1:$DW_PORT/api/v1/feeds")
  echo "feed health: $(jq -c --arg u "$FEED_URL" '.items[] | select(.url == $u) | {last_status, last_http_status, last_new_items}' "$WORK/body")"
  echo "all feeds by last_status: $(jq -c '[.items[] | (if .url | startswith("http://feedhost") then "feedhost " else "shipped " end) + (.last_status // "not yet polled")] | group_by(.) | map({(.[0]): length}) | add' "$WORK/body")"
  echo "--- worker logs (last 5 lines each)"
  for c in $($DOCKER ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=worker); do
    $DOCKER logs "$c" 2>&1 | tail -5
  done
  echo "---"
}

start=$SECONDS
step "dockerd + project image (docker-smoke.sh)"; timed app_image
step "postgres stand-in";                         timed build_pg_image
step "docker-compose up";                         timed compose_up
step "check the stack";                           timed check_stack
step "serve and add a feed";                      timed serve_feed
step "check polls";                               timed check_polls
echo "=== all checks passed in $((SECONDS - start))s (teardown follows)"
