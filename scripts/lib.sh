# Shared by scripts/*: make sure PostgreSQL, Redis and RabbitMQ answer on localhost, and the dev
# environment. A service that answers already is left exactly as it is. One that does not is
# started; one that is not installed is first installed from the distribution's packages (Debian,
# Ubuntu: apt-get) and configured the way the tests expect (see "What scripts/test sets up" in
# docs/DEVELOPMENT.md). Services are started without systemd, so this works in containers and CI too.
# shellcheck shell=bash

log() { printf '==> %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether the TrueNumber node on port $1 answers /health/live with 200. A node binds its port
# before it migrates, so an open port alone does not mean it serves yet.
http_live() {
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf 'GET /health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
    timeout 3 head -c 12 <&3) 2>/dev/null) || return 1
  [[ $reply == "HTTP/1."?" 200" ]]
}

# Waits until `$1 PORT` succeeds for port $2 (named $3), at most $4 seconds (60).
wait_until() {
  local check=$1 port=$2 name=$3 tries=${4:-60}
  for _ in $(seq "$tries"); do
    "$check" "$port" && return 0
    sleep 1
  done
  log "$name did not come up on 127.0.0.1:$port"
  return 1
}

# wait_live: the node on port $1 (named $2) serves. wait_port: the port accepts connections.
wait_live() { wait_until http_live "$@"; }
wait_port() { wait_until port_open "$@"; }

# Runs a command as root: directly when root, else through sudo; without sudo, says what to run.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    log "this step needs root and sudo is not installed; run as root:  $*"
    log "then run this script again"
    return 1
  fi
}

# Installs Debian/Ubuntu packages, refreshing the package lists once per run.
apt_updated=false
apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "apt-get not found: install $* with your system's package manager, then run this again"
    return 1
  fi
  log "installing $* (apt-get)"
  if [ "$apt_updated" = false ]; then
    as_root apt-get update -qq
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The newest PostgreSQL major version installed from the packages (e.g. 15), or nothing.
pg_version() {
  # shellcheck disable=SC2012
  ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1
}

# The lines scripts/test puts first in pg_hba.conf; the marker makes the change idempotent.
pg_hba_marker='# TrueNumber scripts/test: trust TCP connections from this machine'

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if port_open 5432; then return 0; fi
  local version conf ours=false
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(pg_version)" ]; then
    apt_install postgresql
    ours=true
  fi
  version=$(pg_version)
  if [ ! -d "/etc/postgresql/$version/main" ]; then
    log "creating the PostgreSQL $version cluster 'main'"
    as_root pg_createcluster "$version" main >/dev/null
    ours=true
  fi
  # Tests and scripts connect over TCP as user postgres without a password: on a cluster this
  # script made, trust connections from 127.0.0.1 and ::1 (first lines of the file, so they win
  # over the packaged defaults). A cluster that was there before is only started, not changed.
  conf="/etc/postgresql/$version/main/pg_hba.conf"
  if [ "$ours" = true ] && ! as_root grep -qF "$pg_hba_marker" "$conf"; then
    log "trusting local TCP connections in $conf"
    as_root sed -i "1i $pg_hba_marker\\
host    all    all    127.0.0.1/32    trust\\
host    all    all    ::1/128         trust" "$conf"
  fi
  if as_root pg_ctlcluster --skip-systemctl-redirect "$version" main status >/dev/null 2>&1; then
    # Installing the package under systemd starts the cluster: make it read the new pg_hba.conf.
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  else
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  wait_port 5432 PostgreSQL
}

ensure_redis() {
  if port_open 6379; then return 0; fi
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server
    port_open 6379 && return 0 # started by the package, under systemd
  fi
  log "starting Redis (no persistence)"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/truenumber-test.log
  wait_port 6379 Redis
}

ensure_rabbitmq() {
  if port_open 5672; then return 0; fi
  if ! command -v rabbitmq-server >/dev/null; then
    apt_install rabbitmq-server
    port_open 5672 && return 0 # started by the package, under systemd
  fi
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port 5672 RabbitMQ 120
}

ensure_services() {
  ensure_postgres
  ensure_redis
  ensure_rabbitmq
}

# A development JWT secret, made once and kept in .dev/env (git-ignored), so the API and the
# `app-token` command agree across shells.
load_dev_env() {
  mkdir -p .dev
  if [ ! -f .dev/env ]; then
    printf 'JWT_SECRET=%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .dev/env
    chmod 600 .dev/env
  fi
  set -a
  # shellcheck disable=SC1091
  . .dev/env
  set +a
  export LOG_FORMAT="${LOG_FORMAT:-pretty}"
}
