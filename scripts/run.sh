#!/usr/bin/env bash
# `make run`: migrate, load the demo database, print a demo API key, serve with gunicorn.
# Uses exactly the servers and port that the environment or .env configure; APP_ENV defaults to development.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/load-env.sh
export APP_ENV=${APP_ENV:-${NODE_ENV:-development}}
# development is a single-user set-up: the demo's database lives on the metadata server (never in production
# unless the environment says so: Security in the README)
if [ "$APP_ENV" = development ]; then export ALLOW_OWN_SERVERS=${ALLOW_OWN_SERVERS:-true}; fi
.venv/bin/altus4 migrate
SITE="http://${HOST:-127.0.0.1}:${PORT:-3000}"
# says in one line why when it cannot; prints the demo account, its key and a console link that fills the key in
if [ "${ALTUS4_DEMO:-1}" != "0" ]; then .venv/bin/altus4 demo --console "$SITE/console"; fi
echo "Altus 4 on $SITE  (curl $SITE/health)"
echo "web console: $SITE/console"
if [ -n "${OPENAI_API_KEY:-}" ]; then  # an embedding endpoint: keep embedded tables' vectors up to date
  echo "vector follower: altus4 index --follow (metrics on 127.0.0.1:${FOLLOW_METRICS_PORT:-9465})"
  .venv/bin/altus4 index --follow &
fi
exec .venv/bin/gunicorn -c config/gunicorn.conf.py app:app
