#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Tests the kind suite's helpers (lib.sh, manifests.sh, writer.sh) without a cluster, so a
# broken check is found here and not only on a machine with kind. kubectl is faked, but the
# JSONPath expressions the helpers use are evaluated by the real kubectl (`kubectl label
# --local` on fixture objects), the writer really runs against a fake `concoord` and the
# verdicts of stop_writer are checked for honest, lossy and failing clusters. Last, run.sh
# runs from start to end against a simulated cluster (fake-cluster.sh): it must pass on an
# ideal one, fail on one that loses writes, and clean up when its overall bound strikes.
#
#   PATH="$(bash charts/tools.sh):$PATH" bash e2e/kind/selftest.sh   (charts/check.sh does it)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

REAL_KUBECTL="$(command -v kubectl)" || {
  echo "selftest: kubectl is needed (charts/tools.sh provides one)" >&2
  exit 1
}
command -v jq >/dev/null 2>&1 || {
  echo "selftest: jq is needed (Debian package: jq)" >&2
  exit 1
}

FIX="$(mktemp -d)"
cleanup() {
  local pid pids
  for pids in "$FIX"/pids "$FIX"/sim-*/pids; do
    [ -f "$pids" ] || continue
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$pids"
  done
  # A killed writer may still be closing its files.
  rm -rf "$FIX" 2>/dev/null || {
    sleep 1
    rm -rf "$FIX"
  }
}
trap cleanup EXIT

export E2E_POLL_INTERVAL=0.1
# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=manifests.sh
source "$HERE/manifests.sh"

NS=concoord-e2e
NAME=demo
DOMAIN="$NAME.$NS.concoord"
SELECTOR="app.kubernetes.io/name=concoord,app.kubernetes.io/instance=$NAME"
# shellcheck disable=SC2034 # read by lib.sh
TOOLBOX_IMAGE=concoord-e2e/toolbox:selftest
# shellcheck disable=SC2034 # read by lib.sh
MAX_WRITE_FAILURES=3

PASSED=0
FAILED=0
expect_ok() {
  local what=$1 out
  shift
  if out="$("$@" 2>&1)"; then
    PASSED=$((PASSED + 1))
    echo "ok    $what"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL  $what: expected success, got: $out"
  fi
}
# expect_fail WHAT PATTERN COMMAND...: COMMAND fails (in a subshell, so `exit` is caught)
# and its output matches PATTERN.
expect_fail() {
  local what=$1 pattern=$2 out
  shift 2
  if out="$( ("$@") 2>&1)"; then
    FAILED=$((FAILED + 1))
    echo "FAIL  $what: expected failure, got success: $out"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    FAILED=$((FAILED + 1))
    echo "FAIL  $what: failed, but without /$pattern/: $out"
  else
    PASSED=$((PASSED + 1))
    echo "ok    $what"
  fi
}

# ------------------------------------------------------------------ the fake cluster

# jsonpath FILE EXPR: EXPR evaluated by the real kubectl on each object of FILE.
jsonpath() {
  "$REAL_KUBECTL" label --local -f "$1" e2e-selftest=1 --kubeconfig /dev/null -o "jsonpath=$2"
}

fake_get() {
  local type="" name="" output="" args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -n | -l | --sort-by) shift ;;
      -o) output=$2 && shift ;;
      -o*) output=${1#-o} ;;
      -*) ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  type=${args[0]}
  name=${args[1]:-}
  local file
  case "$type" in
    concoordcluster) file="$FIX/ccc-$name.yaml" ;;
    pod) file="$FIX/pod-$name.yaml" ;;
    pods) file="$FIX/pods.yaml" ;;
    *)
      # owned_objects: every listable kind at once, as JSON
      [ "$output" = json ] && cat "$FIX/owned.json" && return 0
      echo "fake kubectl: unexpected get $*" >&2
      return 1
      ;;
  esac
  if [ ! -s "$file" ]; then
    [ -n "$name" ] && echo "Error from server (NotFound): $type \"$name\" not found" >&2 && return 1
    return 0
  fi
  case "$output" in
    name) jsonpath "$file" '{.kind}/{.metadata.name}{"\n"}' | tr '[:upper:]' '[:lower:]' ;;
    jsonpath=*)
      local expr=${output#jsonpath=}
      if [[ "$expr" =~ ^\{range\ \.items\[\*\]\}(.*)\{end\}$ ]]; then
        jsonpath "$file" "${BASH_REMATCH[1]}"
      else
        jsonpath "$file" "$expr"
      fi
      ;;
    *)
      echo "fake kubectl: unexpected output $output" >&2
      return 1
      ;;
  esac
}

# exec in the toolbox runs the command here (with the fake concoord and dig); in a writer
# pod, with /tmp standing for that writer's folder.
fake_exec() {
  local pod=""
  while [ "$1" != "--" ]; do
    case "$1" in
      -n) shift ;;
      -*) ;;
      *) pod=$1 ;;
    esac
    shift
  done
  shift
  if [ "$pod" = toolbox ]; then
    PATH="$FIX/bin:$PATH" "$@"
  else
    local args=("${@//\/tmp\//$FIX/$pod/}")
    "${args[@]}"
  fi
}

# apply of a writer pod starts writer.sh here, in the background.
fake_apply() {
  local manifest pod
  manifest="$(cat)"
  pod="$(sed -n 's/^  name: *//p' <<<"$manifest" | head -n 1)"
  if grep -q 'e2e-writer' <<<"$manifest"; then
    mkdir -p "$FIX/$pod"
    E2E_WRITER_DIR="$FIX/$pod" PATH="$FIX/bin:$PATH" bash "$HERE/writer.sh" "$DOMAIN" counter \
      >/dev/null 2>&1 </dev/null &
    echo "$!" >>"$FIX/pids"
  fi
  echo "pod/$pod created"
}

kubectl() {
  case "$1" in
    get) shift && fake_get "$@" ;;
    exec) shift && fake_exec "$@" ;;
    apply) fake_apply ;;
    wait | delete) return 0 ;;
    api-resources) printf '%s\n' pods services configmaps statefulsets.apps events events.events.k8s.io ;;
    *)
      echo "fake kubectl: unexpected $*" >&2
      return 1
      ;;
  esac
}

# The fake concoord keeps the counter in a file. FAKE_MODE: honest (calls 3 and 7 fail,
# the first after applying, so its outcome is unknown), lossy (every other acknowledged
# increment is lost), broken (every call after the 12th fails).
mkdir -p "$FIX/bin"
cat >"$FIX/bin/concoord" <<EOF
#!/usr/bin/env bash
set -eu
state="$FIX/counter"
calls="$FIX/calls"
EOF
cat >>"$FIX/bin/concoord" <<'EOF'
[ "$1" = call ] || exit 2
method="${*: -1}"
value=$(cat "$state" 2>/dev/null || echo 0)
if [ "$method" = getvalue ]; then
  echo "$value"
  exit 0
fi
n=$(($(cat "$calls" 2>/dev/null || echo 0) + 1))
echo "$n" >"$calls"
case "${FAKE_MODE:-honest}" in
  honest)
    [ "$n" = 3 ] && echo $((value + 1)) >"$state" && echo "TimeoutError: no answer in 10s" >&2 && exit 1
    [ "$n" = 7 ] && echo "ConnectionError: refused" >&2 && exit 1
    ;;
  lossy) [ $((n % 2)) = 0 ] && exit 0 ;;
  broken) [ "$n" -gt 12 ] && echo "ConnectionError: no member answers" >&2 && exit 1 ;;
esac
echo $((value + 1)) >"$state"
EOF
cat >"$FIX/bin/dig" <<'EOF'
#!/usr/bin/env bash
for ((i = 0; i < ${FAKE_SRV:-3}; i++)); do echo "0 100 14000 demo-$i.demo-peers.concoord-e2e.svc.cluster.local."; done
EOF
chmod +x "$FIX/bin/concoord" "$FIX/bin/dig"

# ccc_fixture FILE GENERATION OBSERVED AVAILABLE READY REPLICAS LEARNER_OF_LAST
ccc_fixture() {
  local i members=""
  for ((i = 0; i < $6; i++)); do
    local learner=false healthy=true
    if [ "$7" = yes ] && [ "$i" = $(($6 - 1)) ]; then learner=true healthy=false; fi
    members+="  - {name: demo-$i, address: \"demo-$i.demo-peers:14000\", id: $((i + 1)), leader: $([ "$i" = 1 ] && echo true || echo false), healthy: $healthy, learner: $learner}"$'\n'
  done
  cat >"$FIX/$1" <<EOF
apiVersion: concoord.io/v1alpha1
kind: ConCoordCluster
metadata: {name: demo, namespace: concoord-e2e, generation: $2, uid: "cr-uid"}
spec: {replicas: $6}
status:
  observedGeneration: $3
  replicas: $6
  readyReplicas: $5
  leader: demo-1
  view: 9
  members:
$members  conditions:
  - {type: Available, status: "$4", reason: Quorum, message: m, lastTransitionTime: "2026-01-01T00:00:00Z"}
EOF
}

# pods_fixture IMAGE... : one Ready pod per image (the word "notready" after an image
# makes that pod not Ready).
pods_fixture() {
  local i=0 ready
  : >"$FIX/pods.yaml"
  while [ $# -gt 0 ]; do
    ready=True
    if [ "${2:-}" = notready ]; then ready=False; fi
    cat >>"$FIX/pods.yaml" <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: demo-$i, namespace: concoord-e2e, uid: "uid-$i-$1"}
spec: {containers: [{name: replica, image: "$1"}]}
status: {conditions: [{type: Ready, status: "$ready"}]}
EOF
    shift
    [ "${1:-}" = notready ] && shift
    i=$((i + 1))
  done
  cp "$FIX/pods.yaml" "$FIX/pod-demo-0.yaml"
}

# ------------------------------------------------------------------ the tests

echo "== wait_until"
expect_ok "returns once the condition holds" wait_until 5 "true holds" true
expect_fail "fails the step at its deadline" "timed out after 1s waiting until never" wait_until 1 "never" false

echo "== cluster_settled (JSONPath evaluated by kubectl $("$REAL_KUBECTL" version --client -o json | jq -r .clientVersion.gitVersion))"
ccc_fixture ccc-demo.yaml 4 4 True 3 3 no
expect_ok "settled: 3 of 3 at generation 4" cluster_settled "$NS" demo 3
expect_fail "not settled when 5 are wanted" "ready=3/5" cluster_settled "$NS" demo 5
ccc_fixture ccc-demo.yaml 5 4 True 3 3 no
expect_fail "not settled while observedGeneration lags" "generation=5 observed=4" cluster_settled "$NS" demo 3
ccc_fixture ccc-demo.yaml 4 4 False 3 3 no
expect_fail "not settled while Available is False" "available=False" cluster_settled "$NS" demo 3
ccc_fixture ccc-demo.yaml 4 4 True 3 3 yes
expect_fail "not settled with a learner" "learners=\[demo-2\]" cluster_settled "$NS" demo 3
expect_ok "leader_is_not: demo-1 leads, not demo-0" leader_is_not "$NS" demo demo-0
expect_fail "leader_is_not: demo-1 still leads" "leader=demo-1" leader_is_not "$NS" demo demo-1

echo "== pods_ready and pod_replaced"
pods_fixture concoord/replica:2 concoord/replica:2 concoord/replica:2
expect_ok "3 Ready pods on the new image" pods_ready "$NS" "$SELECTOR" 3 concoord/replica:2
expect_fail "not 5 pods" "pods=3 ready=3" pods_ready "$NS" "$SELECTOR" 5
pods_fixture concoord/replica:2 concoord/replica:1 concoord/replica:2
expect_fail "one pod still on the old image" "on concoord/replica:2: 2" pods_ready "$NS" "$SELECTOR" 3 concoord/replica:2
pods_fixture concoord/replica:2 concoord/replica:2 notready concoord/replica:2
expect_fail "one pod not Ready" "ready=2" pods_ready "$NS" "$SELECTOR" 3
pods_fixture concoord/replica:2
expect_ok "pod_replaced: new UID and Ready" pod_replaced "$NS" demo-0 old-uid
expect_fail "pod_replaced: same UID" "uid=uid-0-concoord/replica:2" pod_replaced "$NS" demo-0 "uid-0-concoord/replica:2"
expect_fail "pod_replaced: pod gone" "demo-9 is gone" pod_replaced "$NS" demo-9 x

echo "== SRV answers (fake dig)"
expect_ok "srv_is 3" srv_is 3
expect_fail "srv_is 5 with 3 records" "3 records" srv_is 5

echo "== the writer and stop_writer's verdicts (writer.sh against a fake concoord)"
# run_writer NAME: a writer against the fake concoord, stopped once it has made 40 calls.
run_writer() {
  local name=$1
  rm -f "$FIX/counter" "$FIX/calls"
  echo 5 >"$FIX/counter"
  start_writer "$name"
  wait_until 20 "$name has made 40 calls" calls_made "$name" 40
  stop_writer "$name"
}
calls_made() {
  local acked failed
  read -r acked failed <"$FIX/$1/progress" || return 1
  echo "acked=$acked failed=$failed"
  [ $((acked + failed)) -ge "$2" ]
}
FAKE_MODE=honest expect_ok "honest cluster: 2 failed calls, no acknowledged write lost" run_writer writer-honest
FAKE_MODE=lossy expect_fail "lossy cluster: lost writes are caught" "LOST WRITES" run_writer writer-lossy
FAKE_MODE=broken expect_fail "failing cluster: too many failed calls" "failed calls during" run_writer writer-broken

echo "== owned_objects"
cat >"$FIX/owned.json" <<'EOF'
{"apiVersion": "v1", "kind": "List", "items": [
 {"kind": "StatefulSet", "metadata": {"name": "demo", "ownerReferences": [{"uid": "cr-uid"}]}},
 {"kind": "Service", "metadata": {"name": "demo-dns", "ownerReferences": [{"uid": "cr-uid"}]}},
 {"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}},
 {"kind": "Pod", "metadata": {"name": "toolbox", "ownerReferences": [{"uid": "other"}]}}
]}
EOF
owned="$(owned_objects cr-uid | paste -sd' ' -)"
if [ "$owned" = "StatefulSet/demo Service/demo-dns" ]; then
  PASSED=$((PASSED + 1))
  echo "ok    owned_objects lists exactly what the cluster owns"
else
  FAILED=$((FAILED + 1))
  echo "FAIL  owned_objects: got '$owned'"
fi
: >"$FIX/pods.yaml"
expect_fail "nothing_owned_left: objects remain" "StatefulSet/demo" nothing_owned_left cr-uid
echo '{"items": []}' >"$FIX/owned.json"
expect_ok "nothing_owned_left: all gone" nothing_owned_left cr-uid

echo "== manifests"
workers="$(kind_config 2 | grep -c 'role: worker')"
if [ "$workers" = 2 ]; then
  PASSED=$((PASSED + 1))
  echo "ok    kind_config 2 has two workers"
else
  FAILED=$((FAILED + 1))
  echo "FAIL  kind_config 2 has $workers workers"
fi
if coredns_stanza demo.ns.concoord 10.96.0.10 | grep -q '^    forward \. 10\.96\.0\.10$'; then
  PASSED=$((PASSED + 1))
  echo "ok    the CoreDNS stanza forwards to the nameserver's ClusterIP"
else
  FAILED=$((FAILED + 1))
  echo "FAIL  coredns_stanza: $(coredns_stanza demo.ns.concoord 10.96.0.10)"
fi

echo "== run.sh from start to end against a simulated cluster (fake-cluster.sh)"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$HERE/../../Cargo.toml")"
REAL_HELM="$(command -v helm)" || REAL_HELM=""
# sim_run NAME [VAR=VALUE...]: runs run.sh with kind, docker, helm, kubectl, concoord and
# dig simulated; its output is in $FIX/sim-NAME/out.log, its status is returned.
sim_run() {
  local state="$FIX/sim-$1" tool
  shift
  mkdir -p "$state/bin"
  : >"$state/images"
  local skip_build=""
  if [ ! -f "$HERE/../../Dockerfile" ]; then
    # No Dockerfile in this tree (yet): start from images "already built" instead.
    printf '%s fake-id-1\n%s fake-id-2\n' "concoord/replica:$VERSION" "concoord/operator:$VERSION" >"$state/images"
    skip_build=1
  fi
  for tool in kubectl kind docker helm concoord dig; do
    printf '#!/bin/sh\nexec bash "%s" %s "$@"\n' "$HERE/fake-cluster.sh" "$tool" >"$state/bin/$tool"
    chmod +x "$state/bin/$tool"
  done
  env FAKE_STATE="$state" FAKE_HERE="$HERE" FAKE_VERSION="$VERSION" REAL_KUBECTL="$REAL_KUBECTL" \
    REAL_HELM="$REAL_HELM" PATH="$state/bin:$PATH" E2E_POLL_INTERVAL=0.1 E2E_ARTIFACTS="$state/artifacts" \
    E2E_TIMEOUT=300 E2E_SKIP_BUILD="$skip_build" "$@" bash "$HERE/run.sh" </dev/null >"$state/out.log" 2>&1
}
sim_check() { # WHAT CONDITION...: one result line
  local what=$1
  shift
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "ok    $what"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL  $what"
  fi
}
if [ -z "$REAL_HELM" ]; then
  FAILED=$((FAILED + 1))
  echo "FAIL  helm is needed to simulate run.sh (charts/tools.sh provides one)"
else
  status=0
  sim_run ideal || status=$?
  [ -z "${SELFTEST_SHOW:-}" ] || cat "$FIX/sim-ideal/out.log"
  sim_check "an ideal cluster passes every step (status $status)" \
    grep -q 'e2e/kind: all [0-9]* steps passed' "$FIX/sim-ideal/out.log"
  sim_check "... scaled to 5 and back, rolled to a second tag, deleted" \
    grep -q "concoordcluster demo -n concoord-e2e --replicas=5" "$FIX/sim-ideal/calls.log"
  sim_check "... and deleted its kind cluster" grep -q '^kind delete cluster --name concoord-e2e-' "$FIX/sim-ideal/calls.log"
  sim_check "... after loading the four images it built" \
    test "$(grep -c '^kind load docker-image' "$FIX/sim-ideal/calls.log")" = 4
  [ "$status" = 0 ] || sed 's/^/      | /' "$FIX/sim-ideal/out.log" | tail -n 30

  status=0
  sim_run lossy FAKE_LOSE_WRITES=10 || status=$?
  sim_check "a cluster that loses writes fails the suite (status $status)" \
    grep -q 'LOST WRITES' "$FIX/sim-lossy/out.log"
  sim_check "... which still collects diagnostics and deletes its kind cluster" \
    bash -c "[ -f '$FIX/sim-lossy/artifacts/operator.log' ] && grep -q '^kind delete cluster' '$FIX/sim-lossy/calls.log'"
  grep -q 'LOST WRITES' "$FIX/sim-lossy/out.log" || sed 's/^/      | /' "$FIX/sim-lossy/out.log" | tail -n 20

  status=0
  # A cluster that never becomes Available: only the overall bound can end the run (a short
  # bound on an ideal cluster would race the run's own speed).
  sim_run bound E2E_TIMEOUT=4 FAKE_NEVER_AVAILABLE=1 || status=$?
  sim_check "the overall bound stops the suite (status $status, 124 expected)" test "$status" = 124
  sim_check "... and the kind cluster is deleted all the same" grep -q '^kind delete cluster' "$FIX/sim-bound/calls.log"
  [ "$status" = 124 ] || sed 's/^/      | /' "$FIX/sim-bound/out.log" | tail -n 20
fi

echo "selftest: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
