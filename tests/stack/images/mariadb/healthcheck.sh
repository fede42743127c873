#!/bin/bash
# Test fixture: the checks of the official mariadb image's healthcheck.sh that swarm-stack.yml uses, in
# the order given, as the healthcheck user the entrypoint made (its grants: MARIADB_HEALTHCHECK_GRANTS).
#   --connect              a TCP connection and a query succeed
#   --innodb_initialized   InnoDB is up
#   --replication_io / --replication_sql   the replica's IO / SQL thread runs (needs REPLICA MONITOR)
set -u
client=(mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf)
for check in "$@"; do
    case $check in
    --connect) "${client[@]}" --protocol=tcp -h 127.0.0.1 -e 'SELECT 1' >/dev/null || exit 1 ;;
    --innodb_initialized)
        [ "$("${client[@]}" -N -B -e "SELECT 1 FROM information_schema.ENGINES
             WHERE ENGINE = 'InnoDB' AND SUPPORT IN ('YES', 'DEFAULT')")" = 1 ] || exit 1 ;;
    --replication_io | --replication_sql)
        field=$([ "$check" = --replication_io ] && echo Slave_IO_Running || echo Slave_SQL_Running)
        [[ "$("${client[@]}" -e 'SHOW REPLICA STATUS\G')" == *"$field: Yes"* ]] || exit 1 ;;
    *) echo "healthcheck.sh (stand-in): unknown check $check" >&2; exit 2 ;;
    esac
done
