#!/bin/sh
# The API image's entrypoint: runs its command (gunicorn, `altus4 migrate`, ...) and, when asked to stop,
# keeps serving SHUTDOWN_DELAY seconds before passing the signal on. A stopping Swarm task leaves
# Docker's DNS at once, but an edge that resolved it a moment ago (nginx caches tasks.api for 5 s) may
# still send it requests: during the delay they are answered, not refused. Then gunicorn's own graceful
# shutdown finishes what is in flight (graceful_timeout). Kubernetes does the same with a preStop sleep.
set -eu
"$@" &
child=$!
stop() {
    sleep "${SHUTDOWN_DELAY:-0}"
    kill -TERM "$child" 2>/dev/null || true
}
trap stop TERM INT
status=0
wait "$child" || status=$?
# a trapped signal interrupts the first wait: wait again for the child's own exit status
if kill -0 "$child" 2>/dev/null; then wait "$child" || status=$?; fi
exit "$status"
