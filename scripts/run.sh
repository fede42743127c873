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
if [ "${ALTUS4_DEMO:-1}" != "0" ]; then .venv/bin/altus4 demo; fi  # says in one line why when it cannot
echo "Altus 4 on http://${HOST:-127.0.0.1}:${PORT:-3000}  (curl http://${HOST:-127.0.0.1}:${PORT:-3000}/health)"
echo "web console: http://${HOST:-127.0.0.1}:${PORT:-3000}/console  (sign in as the demo user; paste the demo API key in the playground)"
if [ -n "${OPENAI_API_KEY:-}" ]; then  # an embedding endpoint: keep embedded tables' vectors up to date
  echo "vector follower: altus4 index --follow (metrics on 127.0.0.1:${FOLLOW_METRICS_PORT:-9465})"
  .venv/bin/altus4 index --follow &
fi
exec .venv/bin/gunicorn -c config/gunicorn.conf.py app:app
