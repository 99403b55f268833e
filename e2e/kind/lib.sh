# shellcheck shell=bash
# Helpers of the kind end-to-end suite (sourced by run.sh): output, bounded waiting,
# reading the ConCoordCluster's status. Nothing here sleeps for a fixed time to let
# something happen; every wait polls a condition under a deadline.

SUITE_START=$SECONDS
STEP_NO=0

elapsed() { printf '%02d:%02d' $(((SECONDS - SUITE_START) / 60)) $(((SECONDS - SUITE_START) % 60)); }

step() {
  STEP_NO=$((STEP_NO + 1))
  CURRENT_STEP="$*"
  printf '\n[%s] == step %d: %s\n' "$(elapsed)" "$STEP_NO" "$*"
}

info() { printf '[%s]    %s\n' "$(elapsed)" "$*"; }

pass() { printf '[%s]    ok: %s\n' "$(elapsed)" "$*"; }

fail() {
  printf '[%s]    FAILED (step %d, %s): %s\n' "$(elapsed)" "$STEP_NO" "${CURRENT_STEP:-setup}" "$*" >&2
  exit 1
}

# wait_until SECONDS DESCRIPTION COMMAND...: runs COMMAND every POLL_INTERVAL seconds until
# it succeeds; fails the step when the deadline passes. The last output of COMMAND is shown
# when it changes, so a slow wait says what it is waiting on.
POLL_INTERVAL="${E2E_POLL_INTERVAL:-2}"
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout)) out last=""
  info "waiting (at most ${timeout}s) until $what"
  while true; do
    if out="$("$@" 2>&1)"; then
      [ -n "$out" ] && info "  $out"
      pass "$what"
      return 0
    fi
    if [ "$out" != "$last" ] && [ -n "$out" ]; then
      info "  ... $out"
      last=$out
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "timed out after ${timeout}s waiting until $what (last: ${out:-nothing})"
    fi
    sleep "$POLL_INTERVAL"
  done
}

# ------------------------------------------------------------------ cluster status

# ccc_field NS NAME JSONPATH: one field of the ConCoordCluster (empty when absent).
ccc_field() {
  kubectl get concoordcluster "$2" -n "$1" -o "jsonpath={$3}"
}

# cluster_settled NS NAME REPLICAS: succeeds when the operator has observed the latest
# spec (status.observedGeneration == metadata.generation), the Available condition is
# True, and REPLICAS members are ready and healthy voters. Prints the state either way.
cluster_settled() {
  local ns=$1 name=$2 want=$3 line generation observed available ready replicas leader view
  local members healthy learners
  line="$(kubectl get concoordcluster "$name" -n "$ns" -o jsonpath='{.metadata.generation}|{.status.observedGeneration}|{.status.conditions[?(@.type=="Available")].status}|{.status.readyReplicas}|{.status.replicas}|{.status.leader}|{.status.view}|{.status.members[*].name}|{.status.members[?(@.healthy==true)].name}|{.status.members[?(@.learner==true)].name}')" ||
    return 1
  IFS='|' read -r generation observed available ready replicas leader view members healthy learners <<<"$line"
  echo "generation=$generation observed=${observed:-none} available=${available:-unknown} ready=${ready:-0}/$want replicas=${replicas:-0} leader=${leader:-none} view=${view:-none} members=[${members}] learners=[${learners}]"
  [ -n "$observed" ] && [ "$observed" = "$generation" ] || return 1
  [ "$available" = "True" ] || return 1
  [ "${ready:-0}" = "$want" ] && [ "${replicas:-0}" = "$want" ] || return 1
  [ "$(wc -w <<<"$members")" = "$want" ] && [ "$(wc -w <<<"$healthy")" = "$want" ] || return 1
  [ -z "$learners" ] || return 1
  [ -n "$leader" ]
}

# pods_ready NS SELECTOR COUNT [IMAGE]: COUNT pods match, all Ready (and all run IMAGE).
pods_ready() {
  local ns=$1 selector=$2 want=$3 image=${4:-} lines total=0 ready=0 right_image=0 pod status img
  lines="$(kubectl get pods -n "$ns" -l "$selector" -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.containers[0].image}{"\n"}{end}')" ||
    return 1
  while read -r pod status img; do
    [ -n "$pod" ] || continue
    total=$((total + 1))
    if [ "$status" = "True" ]; then ready=$((ready + 1)); fi
    if [ -z "$image" ] || [ "$img" = "$image" ]; then
      right_image=$((right_image + 1))
    fi
  done <<<"$lines"
  echo "pods=$total ready=$ready${image:+ on $image: $right_image}"
  [ "$total" = "$want" ] && [ "$ready" = "$want" ] && [ "$right_image" = "$want" ]
}

# pod_replaced NS POD OLD_UID: the pod exists again under a new UID and is Ready.
pod_replaced() {
  local uid ready
  uid="$(kubectl get pod "$2" -n "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null)" || {
    echo "$2 is gone"
    return 1
  }
  ready="$(kubectl get pod "$2" -n "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')"
  echo "$2 uid=${uid} ready=${ready:-unknown}"
  [ "$uid" != "$3" ] && [ "$ready" = "True" ]
}

# leader_is_not NS NAME POD: the cluster reports a leader, and it is not POD.
leader_is_not() {
  local leader
  leader="$(ccc_field "$1" "$2" .status.leader)" || return 1
  echo "leader=${leader:-none}"
  [ -n "$leader" ] && [ "$leader" != "$3" ]
}
