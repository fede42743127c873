#!/usr/bin/env bash
# Create a Redis Cluster for Altus 4 from running, empty cluster-enabled nodes, and wait until it is ok.
# usage: cluster-bootstrap.sh host:port host:port ... (6 nodes: 3 masters + 3 replicas)
#        env REPLICAS=1 (replicas per master), TIMEOUT=30 (seconds)
# Then: REDIS_CLUSTER_NODES=host:port,host:port,... (any subset is enough to discover the rest).
set -euo pipefail
(( $# >= 3 )) || { echo "usage: $0 host:port host:port host:port [...]" >&2; exit 2; }
REPLICAS=${REPLICAS:-1}; TIMEOUT=${TIMEOUT:-30}
first=${1%:*}; first_port=${1##*:}

info() { redis-cli -h "${1%:*}" -p "${1##*:}" cluster info 2>/dev/null || true; }

if [[ $(info "$1") == *"cluster_known_nodes:$#"* && $(info "$1") == *"cluster_state:ok"* ]]; then
  echo "cluster already formed"; exit 0
fi
redis-cli --cluster create "$@" --cluster-replicas "$REPLICAS" --cluster-yes
deadline=$((SECONDS + TIMEOUT))
for node in "$@"; do
  until [[ $(info "$node") == *"cluster_state:ok"* ]]; do
    (( SECONDS < deadline )) || { echo "cluster not ok on $node after ${TIMEOUT}s" >&2; exit 1; }
    sleep 0.2
  done
done
redis-cli -h "$first" -p "$first_port" cluster nodes | awk '{print $2, $3}' | sort
