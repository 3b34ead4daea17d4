#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: formatting, lints, and every test,
# including the AWS adapters against moto server (a DynamoDB + SQS wire-protocol emulator).
# It installs what it needs (rustfmt and clippy; moto into ./.venv through pip), starts
# moto on a free loopback port, and stops it when it ends, however it ends.
set -euo pipefail
# A clean build gains nothing from incremental state, and it costs gigabytes of disk.
export CARGO_INCREMENTAL=0
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== moto server (DynamoDB + SQS emulator) into .venv"
if [ ! -x .venv/bin/moto_server ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
if [ ! -x .venv/bin/sam ] || [ ! -x .venv/bin/cfn-lint ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check cfn-lint aws-sam-cli
fi
if [ ! -x .venv/bin/schemathesis ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
echo "== Chromium (Debian's package) and playwright-core (npm) for the operator page's test"
if ! command -v chromium >/dev/null 2>&1; then
  root=""
  if [ "$(id -u)" != 0 ]; then root=sudo; fi
  $root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $root apt-get install -y -qq chromium >/dev/null
fi
(cd tests/ui && npm ci --no-audit --no-fund --silent)
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "== installing cargo-deny (a few minutes, once)"
  cargo install --locked --quiet cargo-deny
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >.venv/moto.log 2>&1 &
moto_pid=$!
log=$(mktemp)
trap 'kill "$moto_pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
echo "moto server on $AWS_ENDPOINT_URL"

echo "== template.yaml: cfn-lint, sam validate --lint, no wildcard IAM"
export SAM_CLI_TELEMETRY=0
.venv/bin/cfn-lint template.yaml
.venv/bin/sam validate --lint --template template.yaml
.venv/bin/python infra/check_iam.py template.yaml
# The IAM check must catch a wildcard: feed it one.
bad=$(mktemp)
sed 's/Action: \[dynamodb:Query\]/Action: [dynamodb:*]/' template.yaml >"$bad"
if .venv/bin/python infra/check_iam.py "$bad" 2>/dev/null; then
  echo "error: infra/check_iam.py missed a wildcard action" >&2
  exit 1
fi
rm -f "$bad"

echo "== the Lambda binaries never link the embedded backend (nor aws-lc: TLS is rustls on ring)"
for f in api consumer reconciler; do
  if cargo tree -p "flowgate-$f" -e normal --prefix none | grep -qE '^(flowgate-embedded|rusqlite) '; then
    echo "error: flowgate-$f links the embedded backend" >&2
    exit 1
  fi
  if cargo tree -p "flowgate-$f" -e normal --prefix none | grep -qE '^aws-lc-(rs|sys) '; then
    echo "error: flowgate-$f links aws-lc, which grows the binary; keep the SDKs on rustls-ring" >&2
    exit 1
  fi
done

echo "== the core names no cloud: its providers live behind ports, in the backend crates"
if grep -rniE '\b(aws|sqs|dynamo(db)?|lambda|cloudwatch|eventbridge|emf)\b' functions/core/src functions/core/Cargo.toml; then
  echo "error: functions/core names a cloud (above); move it behind a port, into a backend crate" >&2
  exit 1
fi

echo "== cargo deny: bans, licenses, sources (deny.toml)"
cargo deny check bans licenses sources
if timeout 120 cargo deny fetch >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "cargo deny: the advisory database (github.com/RustSec/advisory-db) cannot be fetched from this machine; advisories were NOT checked"
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo test (all features; --include-ignored runs the AWS tests on moto)"
# The write-capacity count (2,000 starts on moto) runs alone afterwards: beside the other
# AWS tests it slows moto enough to push their 1 s visibility timeouts into redeliveries.
cargo test --workspace --all-targets --all-features -- --include-ignored --skip capacity_aws 2>&1 | tee "$log"
echo "== the DynamoDB write capacity of a start, counted on moto (alone)"
cargo test -p flowgate-tests --test suite --all-features -- --include-ignored capacity_aws 2>&1 | tee -a "$log"

echo "== the operator page (/ui) in headless Chromium; screenshots of each view in target/ui-artifacts"
node tests/ui/run.mjs target/debug/flowgate target/ui-artifacts

echo "== schemathesis over /openapi.json: every check, 2 minutes, against the binary just built"
infra/schemathesis.sh 120

# The AWS tests must never be skipped here.
if grep -qE '^test .* \.\.\. ignored' "$log"; then
  echo "error: some tests were ignored" >&2
  exit 1
fi

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
