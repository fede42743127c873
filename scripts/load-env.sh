# Sourced by the other scripts: export .env entries that the environment does not already set.
if [[ -f .env ]]; then
  while IFS='=' read -r name value; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    [[ -n "${!name+x}" ]] && continue
    value=${value%\"}; value=${value#\"}
    export "$name=$value"
  done < .env
fi
