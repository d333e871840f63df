#!/usr/bin/env bash
# Regenerate grafana/schema/dashboard.schema.json: the JSON Schema of Grafana's classic dashboard
# model (the `Dashboard` type of @grafana/schema, the model that file provisioning loads), made
# with ts-json-schema-generator. Needs node + npm and the npm registry; the tests only read the
# committed file, offline. Usage: scripts/generate_grafana_schema.sh [SCHEMA_VERSION GEN_VERSION]
set -euo pipefail

schema_version=${1:-13.2.3}
generator_version=${2:-2.10.0}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund \
  "@grafana/schema@$schema_version" "ts-json-schema-generator@$generator_version" typescript
npx ts-json-schema-generator \
  --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts \
  --type Dashboard --no-type-check \
  --out "$root/grafana/schema/dashboard.schema.json"
echo "wrote grafana/schema/dashboard.schema.json from @grafana/schema@$schema_version" >&2
