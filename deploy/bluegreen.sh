#!/usr/bin/env bash
# Blue-green traffic switch for the deploy/k8s/overlays/blue-green installation.
#
#   deploy/bluegreen.sh status [COLOR]       live colour and readiness of each
#   deploy/bluegreen.sh switch COLOR         send all traffic to COLOR
#   deploy/bluegreen.sh switch back          send all traffic to the other colour
#
# Options (before the command):
#   -n, --namespace NS   namespace of the installation (default: kubectl's current)
#   --service NAME       the Service to switch (default: tabular-model)
#   --prefix NAME        Deployments are NAME-blue and NAME-green (default: tabular-model)
#   --dry-run            check as usual but print the kubectl command that would
#                        change the Service instead of running it
#   --write              also record the new colour in the overlay
#                        (deploy/k8s/overlays/blue-green/service-selector.yaml), so
#                        the next `kubectl apply -k` keeps it
#
# A switch is refused unless the target colour's Deployment is fully rolled out
# and ready: observedGeneration up to date and replicas, updatedReplicas,
# readyReplicas and availableReplicas all equal to spec.replicas (> 0).
#
# Environment: KUBECTL, the kubectl to run (default: kubectl on PATH, else the
# one in the project's .venv).
#
# Exit status: 0 done (or nothing to do), 1 refused or failed, 2 usage error.
set -euo pipefail

COLORS=(blue green)
SERVICE=tabular-model
PREFIX=tabular-model
NAMESPACE=""
DRY_RUN=0
WRITE=0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OVERLAY_SELECTOR="$HERE/k8s/overlays/blue-green/service-selector.yaml"

usage() {
    # The comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

die() {
    echo "bluegreen: $*" >&2
    exit 1
}

usage_error() {
    echo "bluegreen: $*" >&2
    echo "usage: $0 [options] status [COLOR] | switch COLOR|back   (--help for more)" >&2
    exit 2
}

find_kubectl() {
    if [[ -n "${KUBECTL:-}" ]]; then
        echo "$KUBECTL"
    elif command -v kubectl >/dev/null 2>&1; then
        command -v kubectl
    elif [[ -x "$HERE/../.venv/bin/kubectl" ]]; then
        echo "$HERE/../.venv/bin/kubectl"
    else
        die "kubectl not found (install it, or set KUBECTL)"
    fi
}

kube() {
    if [[ -n "$NAMESPACE" ]]; then
        "$KUBECTL_BIN" --namespace "$NAMESPACE" "$@"
    else
        "$KUBECTL_BIN" "$@"
    fi
}

# WORD, quoted for a POSIX shell when it needs to be.
shell_quote() {
    if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# The command line of kube ARGS..., quoted, for printing.
kube_cmdline() {
    local words=("$KUBECTL_BIN") word line=""
    [[ -n "$NAMESPACE" ]] && words+=(--namespace "$NAMESPACE")
    words+=("$@")
    for word in "${words[@]}"; do
        line+="${line:+ }$(shell_quote "$word")"
    done
    echo "$line"
}

is_color() {
    local c
    for c in "${COLORS[@]}"; do
        [[ "$1" == "$c" ]] && return 0
    done
    return 1
}

other_color() {
    case "$1" in
        blue) echo green ;;
        green) echo blue ;;
        *) die "the Service selects color '$1', which is neither blue nor green" ;;
    esac
}

live_color() {
    kube get service "$SERVICE" -o 'jsonpath={.spec.selector.color}'
}

# Prints "ready|<summary>" or "not-ready|<summary>" for the colour's Deployment.
deployment_state() {
    local name="$PREFIX-$1" out
    if ! out="$(kube get deployment "$name" -o 'jsonpath={.metadata.generation}|{.status.observedGeneration}|{.spec.replicas}|{.status.replicas}|{.status.updatedReplicas}|{.status.readyReplicas}|{.status.availableReplicas}|{.spec.template.spec.containers[0].image}')"; then
        echo "not-ready|deployment/$name not found"
        return 0
    fi
    local gen observed want current updated ready available image
    IFS='|' read -r gen observed want current updated ready available image <<<"$out"
    gen=${gen:-0} observed=${observed:-0} want=${want:-0} current=${current:-0}
    updated=${updated:-0} ready=${ready:-0} available=${available:-0}
    local summary="deployment/$name $image: ready $ready/$want, updated $updated, available $available, total $current"
    if ((want > 0 && observed >= gen && current == want && updated == want && ready == want && available == want)); then
        echo "ready|$summary"
    else
        ((observed < gen)) && summary+=", spec change not yet observed"
        echo "not-ready|$summary"
    fi
}

cmd_status() {
    local only="${1:-}" live c state
    if [[ -n "$only" ]] && ! is_color "$only"; then
        usage_error "unknown colour '$only' (blue or green)"
    fi
    live="$(live_color)" || die "cannot read service/$SERVICE"
    echo "service/$SERVICE sends traffic to: ${live:-<no colour selected>}"
    for c in "${COLORS[@]}"; do
        [[ -n "$only" && "$c" != "$only" ]] && continue
        state="$(deployment_state "$c")"
        printf '%-5s %-4s %-9s %s\n' "$c" "$([[ "$c" == "$live" ]] && echo live || echo idle)" \
            "${state%%|*}" "${state#*|}"
    done
}

write_overlay() {
    local target="$1"
    if [[ ! -f "$OVERLAY_SELECTOR" ]]; then
        die "cannot record the colour: $OVERLAY_SELECTOR not found"
    fi
    if ((DRY_RUN)); then
        echo "would set color: $target in $OVERLAY_SELECTOR"
        return 0
    fi
    sed -i.bak -E "s/^([[:space:]]+color:[[:space:]]*).*/\\1$target/" "$OVERLAY_SELECTOR"
    rm -f "$OVERLAY_SELECTOR.bak"
    echo "recorded color: $target in $OVERLAY_SELECTOR (commit it)"
}

cmd_switch() {
    local target="${1:-}" live previous state patch
    [[ -n "$target" ]] || usage_error "switch needs a colour (blue, green) or 'back'"
    live="$(live_color)" || die "cannot read service/$SERVICE"
    if [[ "$target" == back ]]; then
        [[ -n "$live" ]] || die "service/$SERVICE selects no colour: say which one to switch to"
        target="$(other_color "$live")"
    elif ! is_color "$target"; then
        usage_error "unknown colour '$target' (blue, green or back)"
    fi
    previous="$live"
    if [[ "$target" == "$live" ]]; then
        echo "service/$SERVICE already sends traffic to $target: nothing to do"
        return 0
    fi
    state="$(deployment_state "$target")"
    if [[ "${state%%|*}" != ready ]]; then
        die "refusing to switch to $target: ${state#*|}"
    fi
    echo "$target is ready: ${state#*|}"
    patch="{\"spec\":{\"selector\":{\"color\":\"$target\"}}}"
    if ((DRY_RUN)); then
        echo "dry run, would run:"
        kube_cmdline patch service "$SERVICE" --type merge -p "$patch"
    else
        kube patch service "$SERVICE" --type merge -p "$patch" >/dev/null
        live="$(live_color)"
        [[ "$live" == "$target" ]] || die "service/$SERVICE selects '$live' after the patch"
        echo "service/$SERVICE now sends traffic to $target (was ${previous:-no colour})"
    fi
    if ((WRITE)); then
        write_overlay "$target"
    else
        echo "note: record color: $target in $OVERLAY_SELECTOR, or the next" \
            "'kubectl apply -k' switches traffic back"
    fi
}

main() {
    while (($#)); do
        case "$1" in
            -n | --namespace)
                (($# >= 2)) || usage_error "$1 needs a value"
                NAMESPACE="$2"
                shift 2
                ;;
            --service)
                (($# >= 2)) || usage_error "$1 needs a value"
                SERVICE="$2"
                shift 2
                ;;
            --prefix)
                (($# >= 2)) || usage_error "$1 needs a value"
                PREFIX="$2"
                shift 2
                ;;
            --dry-run)
                DRY_RUN=1
                shift
                ;;
            --write)
                WRITE=1
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            -*) usage_error "unknown option $1" ;;
            *) break ;;
        esac
    done
    (($#)) || usage_error "missing command"
    local command="$1"
    shift
    (($# <= 1)) || usage_error "too many arguments"
    KUBECTL_BIN="$(find_kubectl)"
    case "$command" in
        status) cmd_status "$@" ;;
        switch) cmd_switch "$@" ;;
        *) usage_error "unknown command '$command'" ;;
    esac
}

main "$@"
