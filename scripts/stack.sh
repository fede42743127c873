#!/usr/bin/env bash
# Altus 4 on Docker Swarm: the operator's helper (README, "Deploy on Docker Swarm").
#
#   scripts/stack.sh secrets STACK          create the stack's secrets (strong random values; never replaced)
#   scripts/stack.sh cert HOST [HOST...]    a self-signed certificate in certs/ (or put your own there)
#   scripts/stack.sh deploy STACK           docker stack deploy, configs versioned by content, then wait
#                                           (ALTUS4_METADATA=galera: with swarm-galera.yml's Galera cluster)
#   scripts/stack.sh demo STACK             a demo tenant database beside the stack, and a demo account
#   scripts/stack.sh monitoring STACK       Prometheus + Grafana (monitoring-stack.yml) scraping STACK
#   scripts/stack.sh rm STACK               remove the stack (and its demo); volumes and secrets are kept
#
# Swarm configs and secrets cannot change once created, so every object is named after its stack and every
# config after its content: a changed file becomes a new config, the services using it roll to it, and the
# old one is removed once nothing uses it. Run from anywhere: paths resolve from this repository.
set -euo pipefail
cd "$(dirname "$0")/.."

SECRETS="jwt_secret encryption_key db_password db_root_password redis_password repl_password"
CONFIGS="nginx_main:nginx/nginx.conf nginx_site:nginx/altus4.conf nginx_upstream:nginx/upstream.swarm.conf
mysql_primary:config/mysql/primary.cnf mysql_replica:config/mysql/replica.cnf redis_sentinel:config/redis/sentinel.conf
mysql_galera:config/mysql/galera.cnf galera_node:config/mysql/galera-node.sh"
MONITORING_CONFIGS="prometheus:config/prometheus/prometheus.swarm.yml prometheus_alerts:config/prometheus/alerts.yml
grafana_datasource:config/grafana/datasource.yml grafana_dashboards:config/grafana/dashboards.yml
grafana_dashboard:config/grafana/altus4-dashboard.json"

die() { echo "stack.sh: $*" >&2; exit 1; }
say() { echo "stack.sh: $*" >&2; }
stack_name() {
    [[ "${1:-}" =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "a stack name: lower-case letters, digits and -, e.g. altus4"
    echo "$1"
}
random_secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
digest() { sha256sum "$1" | cut -c1-12; }

# ALTUS4_CFG_<NAME>=<first 12 hex digits of the file's sha256> for each config the stack file names
export_versions() {
    local pair name file
    for pair in $1; do
        name=${pair%%:*} file=${pair#*:}
        [ -f "$file" ] || die "$file is missing"
        export "ALTUS4_CFG_${name^^}=$(digest "$file")"
    done
}

secrets() {
    local stack name
    stack=$(stack_name "$1")
    for name in $SECRETS; do
        if docker secret inspect "${stack}_${name}" >/dev/null 2>&1; then
            say "${stack}_${name} exists (kept)"
        else
            random_secret | docker secret create --label "altus4.stack=${stack}" "${stack}_${name}" - >/dev/null
            say "${stack}_${name} created"
        fi
    done
}

cert() {
    [ $# -ge 1 ] || die "cert HOST [HOST...]: the names (or addresses) clients use"
    local san="" host
    for host in "$@"; do
        if [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then san+="IP:${host},"; else san+="DNS:${host},"; fi
    done
    mkdir -p certs
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 397 \
        -subj "/CN=$1" -addext "subjectAltName=${san%,}" \
        -keyout certs/altus4.key -out certs/altus4.crt 2>/dev/null
    chmod 600 certs/altus4.key
    say "certs/altus4.crt and certs/altus4.key (self-signed for $*; replace them with your CA's to go live)"
}

# every service of the stack at its replica count (one-shot services: their task complete)
converged() {
    local stack=$1 name replicas running wanted
    while read -r name replicas; do
        running=${replicas%%/*} wanted=${replicas#*/} wanted=${wanted%% *}
        if [ "${name}" = "${stack}_migrate" ]; then
            docker service ps "$name" --format '{{.CurrentState}}' | grep -q Complete || return 1
        elif [ "$running" != "$wanted" ]; then
            return 1
        fi
    done < <(docker service ls --filter "label=com.docker.stack.namespace=${stack}" --format '{{.Name}} {{.Replicas}}')
}

wait_converged() {
    local stack=$1 deadline=$((SECONDS + ${ALTUS4_DEPLOY_TIMEOUT:-600}))
    until converged "$stack"; do
        [ $SECONDS -lt $deadline ] || die "$stack did not converge within ${ALTUS4_DEPLOY_TIMEOUT:-600} s: docker stack ps $stack"
        sleep 3
    done
}

# configs of this stack no service uses any more (older versions); in use ones are refused and kept
prune_configs() {
    local stack=$1 used id
    used=$(docker service ls -q --filter "label=com.docker.stack.namespace=${stack}" \
        | xargs -r docker service inspect --format '{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigID}} {{end}}')
    for id in $(docker config ls -q --filter "label=com.docker.stack.namespace=${stack}"); do
        [[ " $used " == *" $id "* ]] || docker config rm "$id" >/dev/null 2>&1 || true
    done
}

deploy() {
    local stack
    stack=$(stack_name "$1")
    for name in $SECRETS; do
        docker secret inspect "${stack}_${name}" >/dev/null 2>&1 || die "no secret ${stack}_${name}: scripts/stack.sh secrets ${stack}"
    done
    export ALTUS4_TLS_CERT=${ALTUS4_TLS_CERT:-certs/altus4.crt} ALTUS4_TLS_KEY=${ALTUS4_TLS_KEY:-certs/altus4.key}
    [ -f "$ALTUS4_TLS_CERT" ] && [ -f "$ALTUS4_TLS_KEY" ] \
        || die "no certificate: scripts/stack.sh cert HOST, or set ALTUS4_TLS_CERT and ALTUS4_TLS_KEY"
    export_versions "$CONFIGS tls_crt:$ALTUS4_TLS_CERT tls_key:$ALTUS4_TLS_KEY"
    export ALTUS4_STACK=$stack
    local files=(-c swarm-stack.yml)
    case "${ALTUS4_METADATA:-replicas}" in  # the metadata tier: a primary and its replica, or Galera
        replicas) ;;
        galera) files+=(-c swarm-galera.yml) ;;
        *) die "ALTUS4_METADATA is replicas (the default) or galera" ;;
    esac
    say "docker stack deploy ${files[*]} ${stack}"
    docker stack deploy --prune "${files[@]}" "$stack"
    wait_converged "$stack"
    prune_configs "$stack"
    say "${stack} is up: https://<a node>:${ALTUS4_HTTPS_PORT:-443}/health"
}

monitoring() {
    local stack
    stack=$(stack_name "$1")
    local password
    if ! docker secret inspect "${stack}_grafana_admin_password" >/dev/null 2>&1; then
        password=$(random_secret)
        printf '%s' "$password" | docker secret create --label "altus4.stack=${stack}" "${stack}_grafana_admin_password" - >/dev/null
        say "Grafana's admin password (shown this once; a swarm secret cannot be read back): $password"
    fi
    export_versions "$MONITORING_CONFIGS"
    export ALTUS4_STACK=$stack
    docker stack deploy --prune -c monitoring-stack.yml "${stack}-monitoring"
    wait_converged "${stack}-monitoring"
    prune_configs "${stack}-monitoring"
    say "${stack}-monitoring is up: Prometheus scrapes every task of ${stack}_api and ${stack}_indexer"
}

# a tenant's database beside the stack (MariaDB on the stack's backend network, on this node), filled with
# the demo data through an API task on this node, which also creates the demo account and prints its key
demo() {
    local stack db password api deadline
    stack=$(stack_name "$1")
    db="${stack}-demo-db"
    password=$(random_secret)
    docker service rm "$db" >/dev/null 2>&1 || true
    while docker ps -aq --filter "label=com.docker.swarm.service.name=${db}" | grep -q .; do sleep 1; done
    docker secret rm "${db}-root" >/dev/null 2>&1 || true
    printf '%s' "$password" | docker secret create --label "altus4.stack=${stack}" "${db}-root" - >/dev/null
    docker service create --detach --quiet --name "$db" --label "altus4.stack=${stack}" \
        --network "${stack}_backend" --endpoint-mode dnsrr \
        --constraint "node.hostname==$(docker info --format '{{.Name}}')" \
        --secret "source=${db}-root,target=root" -e MARIADB_ROOT_PASSWORD_FILE=/run/secrets/root \
        --limit-memory 512M --log-opt max-size=10m --log-opt max-file=3 \
        "${MARIADB_IMAGE:-mariadb:10.11}" >/dev/null
    api=$(docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_api" | head -n1)
    [ -n "$api" ] || die "no task of ${stack}_api runs on this node: run this on a node that has one"
    deadline=$((SECONDS + 180))
    until printf '%s' "$password" | docker exec -i "$api" altus4 demo --host "$db" --admin-password-stdin; do
        [ $SECONDS -lt $deadline ] || die "the demo database did not come up: docker service logs $db"
        say "waiting for ${db} ..."
        sleep 5
    done
}

remove() {
    local stack
    stack=$(stack_name "$1")
    docker service rm "${stack}-demo-db" >/dev/null 2>&1 || true
    docker stack rm "${stack}-monitoring" >/dev/null 2>&1 || true
    docker stack rm "$stack"
    say "removed ${stack}; its volumes and secrets are kept (docker volume ls / docker secret ls --filter label=altus4.stack=${stack})"
}

command=${1:-}
shift || true
case "$command" in
    secrets | cert | deploy | demo | monitoring) "$command" "$@" ;;
    rm) remove "$@" ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
