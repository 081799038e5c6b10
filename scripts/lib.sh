# Shared by scripts/*: make sure PostgreSQL, Redis and RabbitMQ answer on localhost, starting
# any that has stopped (on a machine where they are installed), and the dev environment.
# shellcheck shell=bash

log() { printf '==> %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 tries=${3:-60}
  for _ in $(seq "$tries"); do
    port_open "$port" && return 0
    sleep 1
  done
  log "$name did not come up on 127.0.0.1:$port"
  return 1
}

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if port_open 5432; then return 0; fi
  if command -v pg_ctlcluster >/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    wait_port 5432 PostgreSQL
  else
    log "PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not installed"
    return 1
  fi
}

ensure_redis() {
  if port_open 6379; then return 0; fi
  if command -v redis-server >/dev/null; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_port 6379 Redis
  else
    log "Redis is not running on 127.0.0.1:6379 and redis-server is not installed"
    return 1
  fi
}

ensure_rabbitmq() {
  if port_open 5672; then return 0; fi
  if command -v rabbitmq-server >/dev/null; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
    wait_port 5672 RabbitMQ 120
  else
    log "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed"
    return 1
  fi
}

# Installs Debian packages (refreshing the package lists once per run).
apt_updated=false
apt_install() {
  if [ "$apt_updated" = false ]; then apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
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
