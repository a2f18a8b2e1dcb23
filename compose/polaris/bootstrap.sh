#!/bin/sh
# One-shot Polaris bootstrap for the compose stack: creates the Iceberg catalog that Flink writes and Trino reads,
# stored in the MinIO bucket, and lets the root principal manage its content. Safe to run again: an existing
# catalog is kept. Runs in the curl image (busybox sh, no jq).
set -eu

polaris="${POLARIS_URL:-http://polaris:8181}"
catalog="${POLARIS_CATALOG:-polariscatalog}"
location="${CATALOG_LOCATION:-s3://warehouse/$catalog}"
s3_endpoint="${S3_ENDPOINT:-http://minio:9000}"

echo "requesting a token for ${POLARIS_CLIENT_ID:?set POLARIS_CLIENT_ID}"
response=$(curl -fsS --retry 30 --retry-all-errors --retry-delay 2 \
  "$polaris/api/catalog/v1/oauth/tokens" \
  --user "$POLARIS_CLIENT_ID:${POLARIS_CLIENT_SECRET:?set POLARIS_CLIENT_SECRET}" \
  -d grant_type=client_credentials -d scope=PRINCIPAL_ROLE:ALL)
token=$(printf '%s' "$response" | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
if [ -z "$token" ]; then
  echo "no access_token in the token response" >&2
  exit 1
fi

echo "creating catalog $catalog at $location"
body=$(cat <<JSON
{"catalog": {
  "name": "$catalog",
  "type": "INTERNAL",
  "readOnly": false,
  "properties": {"default-base-location": "$location"},
  "storageConfigInfo": {
    "storageType": "S3",
    "allowedLocations": ["$location"],
    "endpoint": "$s3_endpoint",
    "endpointInternal": "$s3_endpoint",
    "pathStyleAccess": true
  }
}}
JSON
)
status=$(curl -sS -o /tmp/create-catalog.out -w '%{http_code}' -X POST "$polaris/api/management/v1/catalogs" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$body")
case "$status" in
  200|201) echo "catalog $catalog created" ;;
  409) echo "catalog $catalog exists already" ;;
  *) echo "creating catalog $catalog failed with HTTP $status:" >&2; cat /tmp/create-catalog.out >&2; exit 1 ;;
esac

echo "granting CATALOG_MANAGE_CONTENT on $catalog to catalog_admin"
curl -fsS -X PUT "$polaris/api/management/v1/catalogs/$catalog/catalog-roles/catalog_admin/grants" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"grant": {"type": "catalog", "privilege": "CATALOG_MANAGE_CONTENT"}}'
echo "polaris bootstrap done"
