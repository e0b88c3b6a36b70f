#!/usr/bin/env bash
# Compose smoke test: build the images, bring the cluster up on host networking (all traffic on
# 127.0.0.1), wait until pairs flow and both learners step (read through Prometheus's HTTP API, which
# proves scraping works), evaluate every dashboard query, scale teacher actors to 3 and check the shared
# quota holds, wait for the run to finish (student learner, D learner, feeder, student actor exit 0 and are
# not restarted; outputs on the `outputs` volume), then tear down. AFD_SMOKE_STEPS: the run's train.steps.
#
#   bash tests/compose/smoke.sh            (or: make compose-test)
#
# Needs root (or docker group), docker + docker-compose, and a base image: BASE_IMAGE (default
# afd-base:bookworm, built by $AFD_MAKE_BASE_IMAGE, e.g. ../shared/tools/make-base-image.sh, when missing).
# Grafana is not started (its image may be unreachable); tests/ops/test_dashboard.py covers the dashboard,
# and every dashboard query is evaluated here against the live Prometheus.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE_IMAGE="${BASE_IMAGE:-afd-base:bookworm}"
AFD_MAKE_BASE_IMAGE="${AFD_MAKE_BASE_IMAGE:-../shared/tools/make-base-image.sh}"
TIMEOUT_S="${AFD_SMOKE_TIMEOUT_S:-900}"
PROJECT="${AFD_SMOKE_PROJECT:-afd-smoke}"
PROM="http://127.0.0.1:19090"
export AFD_IMAGE="${AFD_IMAGE:-afd-async:dev}"
export AFD_REDIS_IMAGE="${AFD_REDIS_IMAGE:-$AFD_IMAGE}"          # the afd image ships redis-server
export AFD_PROMETHEUS_IMAGE="${AFD_PROMETHEUS_IMAGE:-afd-prometheus:dev}"
# One run for every role (compose passes AFD_OVERRIDES to each): the smoke experiment, long enough that
# pairs still flow while teacher actors are scaled and the quota is observed, short enough to finish here
# (15-80 steps/min on 2 shared CPU cores, with one torch thread per role as `afd run` uses).
export AFD_OVERRIDES="${AFD_OVERRIDES:-experiment=smoke train.steps=${AFD_SMOKE_STEPS:-120} train.torch_threads=1}"
FINISH_TIMEOUT_S="${AFD_SMOKE_FINISH_TIMEOUT_S:-900}"
SERVICES=(secrets-init redis teacher-server teacher-actor student-actor feeder d-learner student-learner prometheus)
COMPOSE=(docker-compose -p "$PROJECT" -f docker-compose.yml -f ops/compose.hostnet.yml)
command -v docker-compose >/dev/null || COMPOSE=(docker compose -p "$PROJECT" -f docker-compose.yml -f ops/compose.hostnet.yml)

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# --- images ----------------------------------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  [ -x "$AFD_MAKE_BASE_IMAGE" ] || { echo "no $BASE_IMAGE and no $AFD_MAKE_BASE_IMAGE to build it" >&2; exit 1; }
  log "building $BASE_IMAGE"; "$AFD_MAKE_BASE_IMAGE" "$BASE_IMAGE"
fi
# The CPU torch wheel: from pip's configured find-links if this machine has one (never committed).
torch_args=()
if ! ls ops/wheels/torch-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --no-index -d ops/wheels "torch==${TORCH_VERSION:-2.13.0}" 2>/dev/null || true
fi
ls ops/wheels/torch-*.whl >/dev/null 2>&1 && torch_args=(--build-arg "TORCH_PIP_ARGS=")
# Extra CAs of this machine (a TLS-intercepting proxy), so pip inside the build trusts what pip outside does.
cp -n /usr/local/share/ca-certificates/*.crt ops/certs/ 2>/dev/null || true
log "building $AFD_IMAGE and $AFD_PROMETHEUS_IMAGE on $BASE_IMAGE"
docker build -q --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" "${torch_args[@]}" -f ops/Dockerfile -t "$AFD_IMAGE" .
docker build -q --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$AFD_PROMETHEUS_IMAGE" ops/prometheus

# --- cluster ---------------------------------------------------------------------------------------------
cleanup() {
  rc=$?
  if [ $rc -ne 0 ]; then
    log "FAILED (rc=$rc); service states and log tails:"
    "${COMPOSE[@]}" ps || true
    "${COMPOSE[@]}" logs --tail=40 --no-color || true
  fi
  log "down"; "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
log "up: ${SERVICES[*]}"
"${COMPOSE[@]}" up -d --no-build "${SERVICES[@]}"

# --- checks, through the Prometheus HTTP API -------------------------------------------------------------
python3 tests/compose/prom_checks.py --prometheus "$PROM" --timeout "$TIMEOUT_S" flow
# While the learners still run (their series vanish once the run has finished).
python3 tests/compose/prom_checks.py --prometheus "$PROM" --timeout 60 dashboard
log "scale teacher-actor=3"
"${COMPOSE[@]}" up -d --no-build --scale teacher-actor=3 teacher-actor
python3 tests/compose/prom_checks.py --prometheus "$PROM" --timeout "$TIMEOUT_S" quota --teacher-actors 3

# --- the run finishes: the student learner reaches train.steps, sets the stop key and exits 0; with
# `restart: on-failure` it (and every role that followed the stop key) stays down. -----------------------
log "waiting for the run to finish (train.steps from AFD_OVERRIDES=\"$AFD_OVERRIDES\")"
learner="$("${COMPOSE[@]}" ps -q student-learner)"
deadline=$((SECONDS + FINISH_TIMEOUT_S))
until [ "$(docker inspect -f '{{.State.Status}}' "$learner")" = exited ]; do
  [ $SECONDS -lt $deadline ] || { log "student-learner still running after ${FINISH_TIMEOUT_S}s"; exit 1; }
  sleep 5
done
sleep 15  # the roles that watch the stop key notice it within a few seconds
for svc in student-learner d-learner feeder student-actor teacher-actor teacher-server; do
  for c in $("${COMPOSE[@]}" ps -q "$svc"); do
    log "$svc $(docker inspect -f '{{.Name}}: {{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}}' "$c")"
  done
done
read -r code restarts < <(docker inspect -f '{{.State.ExitCode}} {{.RestartCount}}' "$learner")
[ "$code" = 0 ] && [ "$restarts" = 0 ] || { log "student-learner: exit $code after $restarts restarts"; exit 1; }
for svc in d-learner feeder student-actor; do
  for c in $("${COMPOSE[@]}" ps -q "$svc"); do
    read -r st code restarts < <(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}' "$c")
    [ "$st" = exited ] && [ "$code" = 0 ] && [ "$restarts" = 0 ] || { log "$svc: $st exit $code, $restarts restarts"; exit 1; }
  done
done
# The student learner's outputs are on the `outputs` volume.
docker run --rm --entrypoint python -v "${PROJECT}_outputs:/outputs:ro" "$AFD_IMAGE" -c '
import json, os, sys
d = "/outputs/run"
s = json.load(open(os.path.join(d, "summary.json")))
print("outputs:", " ".join(sorted(os.listdir(d))))
print("summary:", json.dumps({k: s.get(k) for k in ("algo", "mode", "staleness", "steps", "seconds", "pairs_per_s", "final_d_acc")}))
sys.exit(0 if s.get("steps", 0) > 0 else 1)'
log "PASS"
