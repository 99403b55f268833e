# shellcheck shell=bash
# Helpers of the kind end-to-end suite (sourced by run.sh, tested by selftest.sh): output,
# bounded waiting, reading the ConCoordCluster's status, the writing client. Nothing here sleeps for a fixed time to let
# something happen; every wait polls a condition under a deadline.

SUITE_START=$SECONDS
STEP_NO=0
CURRENT_STEP=""

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
  local ns=$1 label_selector=$2 want=$3 image=${4:-} lines total=0 ready=0 right_image=0 pod status img
  lines="$(kubectl get pods -n "$ns" -l "$label_selector" -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.containers[0].image}{"\n"}{end}')" ||
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

# ------------------------------------------------------------------ client helpers
# These use the suite's settings: NS, DOMAIN, SELECTOR, TOOLBOX_IMAGE, MAX_WRITE_FAILURES.

# in_toolbox COMMAND...: runs COMMAND in the toolbox pod.
in_toolbox() { kubectl exec -n "$NS" toolbox -- "$@"; }

# counter_value: the counter's value, read through SRV discovery.
counter_value() {
  local v
  v="$(in_toolbox concoord call --timeout 20s "$DOMAIN" counter getvalue)" || return 1
  [[ "$v" =~ ^-?[0-9]+$ ]] || {
    echo "counter getvalue answered '$v'"
    return 1
  }
  echo "$v"
}

# srv_is N [DIG ARGS...]: succeeds when the SRV answer has N records; prints them.
srv_is() {
  local want=$1 answer
  shift
  answer="$(in_toolbox dig +short +time=2 +tries=2 "$@" SRV "_concoord._tcp.$DOMAIN.")" || return 1
  echo "$(grep -c . <<<"$answer" || true) records: $(tr '\n' ' ' <<<"$answer")"
  [ "$(grep -c . <<<"$answer" || true)" = "$want" ]
}

WRITER_BASE=0
# start_writer NAME: records the counter's value, then starts a writer pod.
start_writer() {
  WRITER_BASE="$(counter_value)" || fail "cannot read the counter before starting $1: $WRITER_BASE"
  # The application's client certificate Secret the operator makes for cluster NAME (run.sh).
  # shellcheck disable=SC2153
  writer_pod "$NS" "$1" "$TOOLBOX_IMAGE" "$DOMAIN" "$NAME-client-tls" | kubectl apply -f - >/dev/null
  kubectl wait -n "$NS" --for=condition=Ready "pod/$1" --timeout=120s >/dev/null ||
    fail "writer pod $1 did not start"
  wait_until 60 "writer $1 has acknowledged writes" writer_progress "$1" 1
  info "writer $1 started; counter was $WRITER_BASE"
}

# writer_progress NAME MIN: the writer has at least MIN acknowledged writes.
writer_progress() {
  local acked failed
  read -r acked failed < <(kubectl exec -n "$NS" "$1" -- cat /tmp/progress 2>/dev/null || echo "0 0")
  echo "acked=$acked failed=$failed"
  [ "$acked" -ge "$2" ]
}

# writer_acked NAME: the writer's acknowledged writes so far.
writer_acked() {
  local acked failed
  read -r acked failed < <(kubectl exec -n "$NS" "$1" -- cat /tmp/progress 2>/dev/null || echo "0 0")
  echo "$acked"
}

writer_result() { kubectl exec -n "$NS" "$1" -- cat /tmp/result 2>/dev/null; }

# stop_writer NAME: stops the writer and checks its counts against the counter:
# ACKED <= increase <= ACKED + FAILED (exactly ACKED when nothing failed), FAILED bounded.
stop_writer() {
  local name=$1 acked failed value increase
  kubectl exec -n "$NS" "$name" -- touch /tmp/stop
  wait_until 60 "writer $name has stopped" writer_result "$name"
  read -r acked failed <<<"$(writer_result "$name")"
  value="$(counter_value)" || fail "cannot read the counter after $name: $value"
  increase=$((value - WRITER_BASE))
  info "writer $name: $acked acknowledged, $failed failed; counter $WRITER_BASE -> $value (+$increase)"
  if [ "$failed" -gt 0 ]; then
    info "failed calls of $name:"
    kubectl exec -n "$NS" "$name" -- tail -n 20 /tmp/errors | sed 's/^/      /' || true
  fi
  kubectl delete pod -n "$NS" "$name" --wait=false >/dev/null
  [ "$acked" -ge 10 ] || fail "writer $name made only $acked acknowledged writes: the cluster was not writable"
  [ "$increase" -ge "$acked" ] ||
    fail "LOST WRITES: $acked acknowledged but the counter rose by $increase"
  [ "$increase" -le $((acked + failed)) ] ||
    fail "counter rose by $increase, more than the $((acked + failed)) calls made"
  [ "$failed" -le "$MAX_WRITE_FAILURES" ] ||
    fail "$failed failed calls during '$CURRENT_STEP' (at most $MAX_WRITE_FAILURES allowed)"
  if [ "$failed" = 0 ]; then
    pass "counter rose by exactly the $acked acknowledged writes"
  else
    pass "no acknowledged write lost ($acked acked, $failed failed with unknown outcome, +$increase)"
  fi
}

# ready_watch FILE: every second, appends the number of Ready replica pods to FILE (a
# failed query records nothing rather than a false zero).
ready_watch() {
  local out
  while true; do
    if out="$(kubectl get pods -n "$NS" -l "$SELECTOR" \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null)"; then
      grep -c '^True$' <<<"$out" >>"$1" || true
    fi
    sleep 1
  done
}

# owned_objects UID: namespaced objects in NS whose ownerReferences name UID.
owned_objects() {
  local kinds
  kinds="$(kubectl api-resources --verbs=list --namespaced -o name | grep -v '^events' | paste -sd, -)"
  kubectl get "$kinds" -n "$NS" -o json 2>/dev/null |
    jq -r --arg uid "$1" '.items[] | select(any(.metadata.ownerReferences[]?; .uid == $uid)) | "\(.kind)/\(.metadata.name)"'
}

nothing_owned_left() {
  local left pods
  left="$(owned_objects "$1")"
  pods="$(kubectl get pods -n "$NS" -l "$SELECTOR" -o name)"
  echo "still there: ${left//$'\n'/ } ${pods//$'\n'/ }"
  [ -z "$left" ] && [ -z "$pods" ]
}
