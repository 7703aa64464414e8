#!/usr/bin/env bash
# Smoke test on a real cluster: apply an overlay, wait for it to roll out,
# and ask the service whether it is ready through a port-forward.
#
#   deploy/smoke.sh [OVERLAY]      (default: deploy/k8s/overlays/rolling)
#
# Environment:
#   NAMESPACE    namespace to deploy into, created if missing
#                (default: kubectl's current namespace)
#   SERVICE      Service to reach (default: tabular-model)
#   TIMEOUT      how long to wait for the rollout (default: 300s)
#   LOCAL_PORT   local end of the port-forward (default: 18080)
#   KUBECTL      kubectl to run (default: kubectl on PATH, else the project's .venv)
#
# Without a reachable cluster (`kubectl cluster-info` fails) it prints
# "skipped: no cluster configured" and exits 0, so it can sit in any pipeline.
# Exit status otherwise: 0 the service answered /readyz, 1 it did not.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OVERLAY="${1:-$HERE/k8s/overlays/rolling}"
SERVICE="${SERVICE:-tabular-model}"
TIMEOUT="${TIMEOUT:-300s}"
LOCAL_PORT="${LOCAL_PORT:-18080}"
NAMESPACE="${NAMESPACE:-}"

if [[ -n "${KUBECTL:-}" ]]; then
    KUBECTL_BIN="$KUBECTL"
elif command -v kubectl >/dev/null 2>&1; then
    KUBECTL_BIN="$(command -v kubectl)"
elif [[ -x "$HERE/../.venv/bin/kubectl" ]]; then
    KUBECTL_BIN="$HERE/../.venv/bin/kubectl"
else
    echo "skipped: no cluster configured (kubectl not installed)"
    exit 0
fi

NS_ARGS=()
[[ -n "$NAMESPACE" ]] && NS_ARGS=(--namespace "$NAMESPACE")

kube() {
    "$KUBECTL_BIN" ${NS_ARGS[@]+"${NS_ARGS[@]}"} "$@"
}

log() {
    echo "smoke: $*"
}

if ! "$KUBECTL_BIN" cluster-info --request-timeout=10s >/dev/null 2>&1; then
    echo "skipped: no cluster configured"
    exit 0
fi

[[ -f "$OVERLAY/kustomization.yaml" ]] || {
    echo "smoke: $OVERLAY has no kustomization.yaml" >&2
    exit 1
}
command -v curl >/dev/null 2>&1 || {
    echo "smoke: curl is needed" >&2
    exit 1
}

if [[ -n "$NAMESPACE" ]] && ! "$KUBECTL_BIN" get namespace "$NAMESPACE" >/dev/null 2>&1; then
    log "creating namespace $NAMESPACE"
    "$KUBECTL_BIN" create namespace "$NAMESPACE" >/dev/null
fi

# the pods refuse to start without their API keys (an empty key list means no authentication)
kube get secret model-api-keys >/dev/null 2>&1 || {
    echo "smoke: create the Secret model-api-keys first (see docs/deploy.md#kubernetes)" >&2
    exit 1
}

log "applying $OVERLAY"
applied="$(kube apply -k "$OVERLAY" -o name)"
while read -r object; do
    log "  $object"
done <<<"$applied"

while read -r object; do
    case "$object" in
        deployment.apps/*)
            log "waiting for $object"
            kube rollout status "$object" --timeout="$TIMEOUT"
            ;;
        rollout.argoproj.io/*)
            log "waiting for $object to be Healthy"
            kube wait "$object" --for=jsonpath='{.status.phase}'=Healthy --timeout="$TIMEOUT"
            ;;
    esac
done <<<"$applied"

PF_PID=""
PF_LOG="$(mktemp)"
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    if [[ -n "$PF_PID" ]]; then
        kill "$PF_PID" 2>/dev/null || true
        wait "$PF_PID" 2>/dev/null || true
    fi
    rm -f "$PF_LOG"
}
trap cleanup EXIT

log "port-forward service/$SERVICE to 127.0.0.1:$LOCAL_PORT"
# The binary itself in the background (not the kube function), so that $! is
# kubectl's own PID.
"$KUBECTL_BIN" ${NS_ARGS[@]+"${NS_ARGS[@]}"} port-forward "service/$SERVICE" "$LOCAL_PORT:80" \
    --address 127.0.0.1 >"$PF_LOG" 2>&1 &
PF_PID=$!

url="http://127.0.0.1:$LOCAL_PORT/readyz"
for _ in $(seq 1 30); do
    if body="$(curl -fsS --max-time 5 "$url" 2>/dev/null)"; then
        log "GET /readyz -> ${body:-OK}"
        curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$LOCAL_PORT/livez"
        log "GET /livez -> OK"
        log "passed"
        exit 0
    fi
    if ! kill -0 "$PF_PID" 2>/dev/null; then
        echo "smoke: port-forward exited:" >&2
        cat "$PF_LOG" >&2
        exit 1
    fi
    sleep 1
done
echo "smoke: $url did not answer 200 within 30 s" >&2
cat "$PF_LOG" >&2
exit 1
