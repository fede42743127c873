#!/usr/bin/env bash
# Install the tools the deployment tests run for real: nginx, HAProxy, promtool, the docker CLI
# (for `docker stack config`, no daemon needed) and the Redis/MariaDB server binaries for the
# replica/sentinel/cluster tests, galera-4 and rsync for the Galera test, Node.js and npm for the official SDK test,
# Debian's Chromium and ChromeDriver for the console's browser test. Debian packages; idempotent;
# needs root only when something is missing.
set -euo pipefail

need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
command -v promtool >/dev/null || need+=(prometheus)          # promtool ships in Debian's prometheus package
command -v docker >/dev/null || need+=(docker.io)              # only the CLI is used
command -v redis-server >/dev/null || need+=(redis-server)
command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || need+=(mariadb-server)
[[ -e /usr/lib/galera/libgalera_smm.so ]] || need+=(galera-4)  # the Galera metadata-cluster test
command -v rsync >/dev/null || need+=(rsync)                   # Galera's state transfer
command -v openssl >/dev/null || need+=(openssl)
command -v pgrep >/dev/null || need+=(procps)
command -v node >/dev/null || need+=(nodejs)                 # the official SDK's test builds and runs it
command -v npm >/dev/null || need+=(npm)
[[ -x /usr/bin/chromium ]] || need+=(chromium)                 # the console's browser test (no browser download here)
[[ -x /usr/bin/chromedriver ]] || need+=(chromium-driver)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)

if (( ${#need[@]} )); then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # services are not started here (no init system); the tests start their own instances
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "tools: nginx haproxy promtool docker redis-server mariadbd galera-4 rsync node npm chromium chromedriver present"
