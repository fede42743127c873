#!/bin/bash
# Test fixture: the part of the official mariadb image's entrypoint that swarm-stack.yml relies on.
#   docker-entrypoint.sh --opt ...   runs  mariadbd --opt ...
#   first start (empty datadir): root's password (MARIADB_ROOT_PASSWORD), MARIADB_DATABASE, MARIADB_USER /
#   MARIADB_PASSWORD, MARIADB_REPLICATION_USER / MARIADB_REPLICATION_PASSWORD (a REPLICATION REPLICA user on a
#   primary; with MARIADB_MASTER_HOST, CHANGE MASTER TO it and START REPLICA instead), and a healthcheck user
#   for healthcheck.sh with MARIADB_HEALTHCHECK_GRANTS. Every *_PASSWORD may be given as *_PASSWORD_FILE.
# As in the official image, the database and users are written to the binary log (replicas get them) and
# root's and the healthcheck user's are not.
set -euo pipefail

if [ "${1:0:1}" = '-' ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi
shift

for var in MARIADB_ROOT_PASSWORD MARIADB_PASSWORD MARIADB_REPLICATION_PASSWORD; do
    file_var="${var}_FILE"
    if [ -n "${!file_var:-}" ]; then export "$var"="$(<"${!file_var}")"; fi
done
literal() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\\\'}"; }  # a SQL string literal
ident() { printf '`%s`' "${1//\`/\`\`}"; }

DATADIR=/var/lib/mysql
if [ ! -d "$DATADIR/mysql" ]; then
    echo "stand-in entrypoint: initialising $DATADIR"
    mariadb-install-db "$@" --user=mysql --datadir="$DATADIR" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd "$@" --user=mysql --skip-networking --socket=/run/mysqld/init.sock &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --socket=/run/mysqld/init.sock ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { echo "mariadbd exited during initialisation" >&2; exit 1; }
        sleep 0.5
    done
    health_pw=$(pwgen -s 32 1)
    sql="SET @@SESSION.SQL_LOG_BIN=0;
        DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
        ALTER USER root@localhost IDENTIFIED BY $(literal "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD is required}");
        CREATE USER root@'%' IDENTIFIED BY $(literal "$MARIADB_ROOT_PASSWORD");
        GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;
        CREATE USER healthcheck@'127.0.0.1' IDENTIFIED BY '$health_pw';
        CREATE USER healthcheck@'localhost' IDENTIFIED BY '$health_pw';"
    if [ -n "${MARIADB_HEALTHCHECK_GRANTS:-}" ]; then
        sql+="GRANT $MARIADB_HEALTHCHECK_GRANTS ON *.* TO healthcheck@'127.0.0.1', healthcheck@'localhost';"
    fi
    sql+="SET @@SESSION.SQL_LOG_BIN=1;"
    if [ -n "${MARIADB_DATABASE:-}" ]; then
        sql+="CREATE DATABASE IF NOT EXISTS $(ident "$MARIADB_DATABASE");"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
        sql+="CREATE USER $(literal "$MARIADB_USER")@'%' IDENTIFIED BY $(literal "${MARIADB_PASSWORD:?}");"
        if [ -n "${MARIADB_DATABASE:-}" ]; then
            sql+="GRANT ALL ON $(ident "$MARIADB_DATABASE").* TO $(literal "$MARIADB_USER")@'%';"
        fi
    fi
    if [ -n "${MARIADB_REPLICATION_USER:-}" ]; then
        if [ -z "${MARIADB_MASTER_HOST:-}" ]; then
            sql+="CREATE USER $(literal "$MARIADB_REPLICATION_USER")@'%'
                    IDENTIFIED BY $(literal "${MARIADB_REPLICATION_PASSWORD:?}");
                  GRANT REPLICATION REPLICA ON *.* TO $(literal "$MARIADB_REPLICATION_USER")@'%';"
        else
            sql+="CHANGE MASTER TO MASTER_HOST=$(literal "$MARIADB_MASTER_HOST"),
                    MASTER_USER=$(literal "$MARIADB_REPLICATION_USER"),
                    MASTER_PASSWORD=$(literal "${MARIADB_REPLICATION_PASSWORD:?}"),
                    MASTER_PORT=${MARIADB_MASTER_PORT:-3306}, MASTER_CONNECT_RETRY=10;
                  START REPLICA;"
        fi
    fi
    mariadb --socket=/run/mysqld/init.sock -uroot --binary-mode <<<"$sql"
    printf '[mariadb-client]\nport=3306\nsocket=/run/mysqld/mysqld.sock\nuser=healthcheck\npassword=%s\n' \
        "$health_pw" >"$DATADIR/.my-healthcheck.cnf"
    chown mysql:mysql "$DATADIR/.my-healthcheck.cnf" && chmod 600 "$DATADIR/.my-healthcheck.cnf"
    mariadb-admin --socket=/run/mysqld/init.sock -uroot -p"$MARIADB_ROOT_PASSWORD" shutdown
    wait "$pid" || true
    echo "stand-in entrypoint: initialised"
fi
exec mariadbd "$@" --user=mysql
