#!/usr/bin/env bash
# Schemathesis over the running API's /openapi.json, every check on, for $1 seconds (default
# 120): 0 server errors, 0 schema violations, and schema-valid requests accepted. Called by
# infra/test.sh with a freshly built target/debug/flowgate and .venv/bin/schemathesis.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
bin=target/debug/flowgate
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
# With a token, requests without one are refused (the ignored_auth check holds us to it).
token=$("$bin" tokens create --tenant schemathesis --scope start,dlq,admin,report --data-dir "$dir")
sleep 2.5 # the server's token cache
# A cursor cannot be described by a schema, nor can "your own tenant": each is given a real
# value. (Both listings' cursors decode from one JSON object that names both positions.)
cursor=$(python3 -c 'import base64,json; t="2026-01-01T00:00:00Z"; print(base64.urlsafe_b64encode(json.dumps({"created_at":t,"instance_id":"i","at":t,"id":"1"}).encode()).decode().rstrip("="))')
cat >"$dir/schemathesis.toml" <<TOML
# A request too large to read (413, 414) is rejected too, as is any other 4xx the default
# lists. (Set here, for every operation: schemathesis applies an operation's own list to all.)
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "5xx"]

[parameters]
"query.cursor" = "$cursor"
"query.tenant" = "schemathesis"
"body.tenant" = "schemathesis"

# Start params are checked against the workflow's own JSON Schema, which the document cannot
# know (400 params-invalid); a key reused with another payload is refused (422, by the
# Idempotency-Key draft), and the stateful phase reuses keys across payloads on purpose.
[[operations]]
include-path = "/v1/workflows/{code}/instances"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]

# A cron expression, an IANA time zone and a range expanded by the workflow's schedules
# cannot be described by a schema: a 400 that says which is the right answer to a wrong one.
[[operations]]
include-path = "/v1/workflows/{code}/schedules/{id}"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# A workflow's target: a webhook URL's host (a private address is refused), a duration, an
# event bus name: a 400 that names the field is the right answer to one the schema allows.
[[operations]]
include-path = "/v1/workflows/{code}"
include-method = "PUT"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]

# A backfill's Idempotency-Key reused with another payload is refused (422).
[[operations]]
include-path = "/v1/workflows/{code}/backfills"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]

# An audit's window: "to after from, at most 31 days" is not a schema.
[[operations]]
include-path = "/v1/audit"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]

TOML
# Every operation but the DolphinScheduler door, with every check.
.venv/bin/schemathesis --config-file "$dir/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
  --checks all -H "Authorization: Bearer $token" --max-time "$((seconds * 5 / 6))" --seed 7 \
  --suppress-health-check all --exclude-path-regex '^/dolphinscheduler/'
# The door answers every refusal but a 401 as DolphinScheduler does: HTTP 200 with its
# envelope and code. So the negative-data check (which wants a 4xx) does not apply to it;
# every other check does, the envelope's schema among them.
.venv/bin/schemathesis --config-file "$dir/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
  --checks all --exclude-checks negative_data_rejection -H "Authorization: Bearer $token" \
  --max-time "$((seconds / 6))" --seed 7 --suppress-health-check all \
  --include-path-regex '^/dolphinscheduler/'
