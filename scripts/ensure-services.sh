#!/usr/bin/env bash
# Make sure the MySQL/MariaDB and Redis that Altus 4 is configured for are reachable.
# Configured remote servers are only checked; local defaults (127.0.0.1/localhost) are
# installed (Debian packages) and started when they are down. Idempotent; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/load-env.sh
DB_HOST=${DB_HOST:-127.0.0.1}; DB_PORT=${DB_PORT:-3306}
DB_USERNAME=${DB_USERNAME:-root}; DB_PASSWORD=${DB_PASSWORD:-}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}; REDIS_PORT=${REDIS_PORT:-6379}

is_local() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    (( SECONDS >= deadline )) && return 1
    sleep 0.3
  done
}
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  (( ${#missing[@]} == 0 )) && return 0
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

if ! port_open "$DB_HOST" "$DB_PORT"; then
  if ! is_local "$DB_HOST"; then
    echo "MySQL at $DB_HOST:$DB_PORT is not reachable (configured by DB_HOST/DB_PORT)" >&2; exit 1
  fi
  echo "starting local MariaDB on port $DB_PORT"
  command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --port="$DB_PORT" \
    >/dev/null 2>&1 || true
  wait_port "$DB_HOST" "$DB_PORT" 60 || { echo "MariaDB did not come up on $DB_PORT within 60 s" >&2; exit 1; }
fi

if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
  if ! is_local "$REDIS_HOST"; then
    echo "Redis at $REDIS_HOST:$REDIS_PORT is not reachable (configured by REDIS_HOST/REDIS_PORT)" >&2; exit 1
  fi
  echo "starting local Redis on port $REDIS_PORT"
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/altus4.log
  wait_port "$REDIS_HOST" "$REDIS_PORT" 30 || { echo "Redis did not come up on $REDIS_PORT within 30 s" >&2; exit 1; }
fi
echo "MySQL $DB_HOST:$DB_PORT and Redis $REDIS_HOST:$REDIS_PORT are reachable"
