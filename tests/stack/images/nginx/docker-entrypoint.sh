#!/bin/sh
# The part of the official nginx image's entrypoint (20-envsubst-on-templates.sh) the stack relies on: each
# /etc/nginx/templates/NAME.template is rendered with envsubst, substituting only variables the container's
# environment defines (nginx's own $variables stay), into ${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}/NAME.
set -eu
templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
output=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
if [ -d "$templates" ]; then
    defined=$(env | cut -d= -f1 | sed 's/.*/${&}/' | tr '\n' ' ')
    for template in "$templates"/*.template; do
        [ -f "$template" ] || continue
        name=$(basename "$template" .template)
        envsubst "$defined" < "$template" > "$output/$name"
        echo "$0: rendered $template to $output/$name"
    done
fi
exec "$@"
