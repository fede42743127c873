#!/usr/bin/env bash
# Start one MariaDB Galera node of the metadata cluster, deciding how it joins (README, "Galera"), then exec
# mariadbd with the given options (pid 1 in a container):
#   - a running cluster answers (a peer in the Primary component): join it; refused when this node's data
#     belongs to another cluster (joining would replace it with a full copy of the running one)
#   - after a crash (grastate.dat at seqno -1): recover the node's position first (--wsrep-recover) and start
#     from it, so it rejoins by an incremental transfer (IST), not a full copy
#   - an empty datadir and no cluster: bootstrap a new, empty cluster on the bootstrap candidate only; the
#     other nodes wait for it
#   - data and no cluster: bootstrap only where grastate.dat says safe_to_bootstrap: 1 (the last node to leave
#     cleanly); elsewhere start and wait: when every member of the last primary component is back, Galera forms
#     it again by itself (pc.recovery, on by default), so a whole cluster that crashed needs no manual step
#   - GALERA_FORCE_BOOTSTRAP=1 (an operator's decision after a disaster) is refused unless safe_to_bootstrap: 1
#
# Environment:
#   GALERA_DATADIR            the node's datadir (/var/lib/mysql)
#   GALERA_PEERS              the nodes' SQL addresses, host:port,... (this node may be among them; a name that
#                             resolves to several addresses, as Swarm's tasks.<service>, means each of them)
#   GALERA_SELF               this node's SQL host:port, left out of the peers
#   GALERA_BOOTSTRAP_CANDIDATE  1 on the one node that may start a new, empty cluster
#   GALERA_PROBE_USER, GALERA_PROBE_PASSWORD_FILE   an account that can read the peers' status (root)
#   GALERA_JOIN_WAIT          seconds an empty non-candidate waits for a cluster before exiting 1 (300)
#   GALERA_INSTALL_ARGS       extra mariadb-install-db options for an empty datadir
#   GALERA_NODE_ADDRESS       auto: this container's address as --wsrep-node-address (Swarm)
#   MARIADB_ROOT_PASSWORD_FILE, MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD_FILE   set up when this node
#                             bootstraps a new cluster (the others receive them with its data)
set -euo pipefail

datadir=${GALERA_DATADIR:-/var/lib/mysql}
probe_user=${GALERA_PROBE_USER:-root}
probe_password=""
if [ -n "${GALERA_PROBE_PASSWORD_FILE:-}" ]; then probe_password=$(cat "$GALERA_PROBE_PASSWORD_FILE"); fi
say() { echo "galera-node: $*" >&2; }
# a field of grastate.dat (the node's saved cluster state), empty when there is none
grastate() {
  if [ -f "$datadir/grastate.dat" ]; then sed -n "s/^$1:[[:space:]]*//p" "$datadir/grastate.dat" | head -n 1; fi
}

# every peer address, one per line (names resolved; this node left out)
peer_addresses() {
  local peer host port address
  IFS=, read -ra peers <<< "${GALERA_PEERS:-}"
  for peer in "${peers[@]}"; do
    [ -n "$peer" ] || continue
    host=${peer%:*} port=${peer##*:}
    if [[ $host =~ ^[0-9.]+$ ]]; then
      address=$host
    else
      address=$(getent ahostsv4 "$host" | awk '{print $1}' | sort -u) || continue
    fi
    for a in $address; do
      # this node: GALERA_SELF, or (no port to tell nodes on one address apart) its own non-loopback address
      if [ -n "${GALERA_SELF:-}" ]; then [ "$a:$port" = "$GALERA_SELF" ] && continue
      elif [[ $a != 127.* && " $(hostname -i 2> /dev/null) " == *" $a "* ]]; then continue; fi
      echo "$a:$port"
    done
  done
}

# "host:port cluster-uuid" of the first peer in a Primary component, or nothing
primary_peer() {
  local peer out
  for peer in $(peer_addresses); do
    out=$(MYSQL_PWD=$probe_password timeout 5 mariadb --protocol=tcp -h "${peer%:*}" -P "${peer##*:}" -u "$probe_user" \
      --connect-timeout=2 -N -s -e "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME
        IN ('wsrep_cluster_state_uuid', 'wsrep_cluster_status') ORDER BY VARIABLE_NAME" 2>/dev/null) || continue
    if [ "$(sed -n 2p <<< "$out")" = Primary ]; then
      echo "$peer $(sed -n 1p <<< "$out")"
      return 0
    fi
  done
  return 1
}

fresh=0
[ -d "$datadir/mysql" ] || fresh=1
if [ "${GALERA_FORCE_BOOTSTRAP:-0}" = 1 ] && [ "$(grastate safe_to_bootstrap)" != 1 ]; then
  say "refusing GALERA_FORCE_BOOTSTRAP: $datadir/grastate.dat says safe_to_bootstrap: $(grastate safe_to_bootstrap)" \
    "(seqno $(grastate seqno)); another node may hold newer writes. Run mariadbd --wsrep-recover on every node," \
    "and set safe_to_bootstrap: 1 by hand only on the one with the highest seqno"
  exit 1
fi

mode=join
if peer=$(primary_peer); then
  own=$(grastate uuid) theirs=${peer#* }
  if [ "$fresh" = 0 ] && [ -n "$own" ] && [ "$own" != 00000000-0000-0000-0000-000000000000 ] && [ "$own" != "$theirs" ]; then
    say "refusing to join ${peer% *}: this node's data belongs to cluster $own, the running one is $theirs, and" \
      "joining would replace the data with a full copy. Move $datadir aside to join as a new node"
    exit 1
  fi
  say "joining the cluster through ${peer% *}"
elif [ "$fresh" = 1 ] && [ "${GALERA_BOOTSTRAP_CANDIDATE:-0}" = 1 ]; then
  mode=bootstrap
  say "empty datadir, no cluster answers: bootstrapping a new cluster"
elif [ "$fresh" = 1 ]; then
  say "empty datadir: waiting for the cluster (up to ${GALERA_JOIN_WAIT:-300} s)"
  deadline=$((SECONDS + ${GALERA_JOIN_WAIT:-300}))
  until peer=$(primary_peer); do
    if [ "$SECONDS" -ge "$deadline" ]; then say "no cluster answered"; exit 1; fi
    sleep 2
  done
  say "joining the cluster through ${peer% *}"
elif [ "$(grastate safe_to_bootstrap)" = 1 ]; then
  mode=bootstrap
  say "no cluster answers and this node left last (safe_to_bootstrap: 1): bootstrapping from its data"
else
  say "no cluster answers: starting and waiting for the last primary component's members (pc.recovery)"
fi

if [ "$fresh" = 1 ]; then
  # shellcheck disable=SC2086  # GALERA_INSTALL_ARGS is a list of options
  install_log=$(mktemp)
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db ${GALERA_INSTALL_ARGS:-} > "$install_log" 2>&1 \
    || { say "mariadb-install-db failed: $(tail -n 5 "$install_log")"; exit 1; }
fi

literal() { local text=${1//\\/\\\\}; printf "'%s'" "${text//\'/\\\'}"; }  # a SQL string literal

# the accounts of a new cluster, made on a private start without replication before it is bootstrapped
set_up_accounts() {
  local socket=/run/mysqld/galera-init.sock pid sql
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  "${MARIADBD:-mariadbd}" "$@" --wsrep-on=OFF --wsrep-provider=none --skip-networking --socket="$socket" &
  pid=$!
  for _ in $(seq 60); do
    mariadb-admin --socket="$socket" ping > /dev/null 2>&1 && break
    kill -0 "$pid" 2> /dev/null || { say "mariadbd exited while the accounts were set up"; exit 1; }
    sleep 0.5
  done
  root=$(cat "$MARIADB_ROOT_PASSWORD_FILE")
  sql="ALTER USER root@localhost IDENTIFIED BY $(literal "$root");
    CREATE USER IF NOT EXISTS root@'%' IDENTIFIED BY $(literal "$root"); GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;"
  if [ -n "${MARIADB_DATABASE:-}" ] && [ -n "${MARIADB_USER:-}" ]; then
    sql+="CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;
      CREATE USER IF NOT EXISTS $(literal "$MARIADB_USER")@'%' IDENTIFIED BY $(literal "$(cat "$MARIADB_PASSWORD_FILE")");
      GRANT ALL ON \`$MARIADB_DATABASE\`.* TO $(literal "$MARIADB_USER")@'%';"
  fi
  mariadb --socket="$socket" -uroot <<< "$sql"
  mariadb-admin --socket="$socket" -uroot -p"$root" shutdown
  wait "$pid" || true
  say "accounts set up"
}

if [ "$fresh" = 1 ] && [ "$mode" = bootstrap ] && [ -n "${MARIADB_ROOT_PASSWORD_FILE:-}" ]; then set_up_accounts "$@"; fi

start=()
if [ "${GALERA_NODE_ADDRESS:-}" = auto ]; then start+=("--wsrep-node-address=$(hostname -i | awk '{print $1}')"); fi
if [ "$(grastate seqno)" = -1 ]; then  # a crash: the position is in InnoDB, not in grastate.dat
  recover_log="$datadir/wsrep-recover.log"
  "${MARIADBD:-mariadbd}" "$@" --wsrep-recover --log-error="$recover_log" > /dev/null 2>&1 || true
  position=$(sed -n 's/.*Recovered position: *\([^ ]*\).*/\1/p' "$recover_log" 2>/dev/null | tail -n 1)
  if [ -n "$position" ]; then
    say "recovered position $position"
    start+=("--wsrep-start-position=$position")
  fi
fi
[ "$mode" = bootstrap ] && start+=(--wsrep-new-cluster)
exec "${MARIADBD:-mariadbd}" "$@" "${start[@]}"
