#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End-to-end suite of the operator and chart on a throwaway kind cluster.
#
#   e2e/kind/run.sh              run it (needs kind, docker, kubectl, helm, jq; pulls images)
#   e2e/kind/run.sh --render DIR write the manifests it would apply to DIR and stop
#
# Steps: create a uniquely named kind cluster; build the replica, operator and toolbox
# images and load them; helm install + helm test; apply the chart's example cluster and
# wait for it (Available condition and observedGeneration, never a fixed sleep); query SRV
# from a pod, through the cluster's nameserver and through a CoreDNS forward, and call the
# counter through SRV over TLS with the client certificate the operator made; check that a pod
# without it (or a token) is refused and that the app token lets it in; renew the replicas'
# certificate without a restart; define a user object type from a ConfigMap, break it (Degraded) and
# replace it (state kept); scale 3 -> 5 -> 3 while a client writes; delete a follower pod, then
# the leader pod; roll to a second image tag without losing quorum; delete the cluster and
# check that every object it owned is gone; uninstall the chart.
#
# Skips (exit 0) when kind is not installed. Everything else missing is an error.
# Settings (environment):
#   E2E_TIMEOUT=3600           overall bound in seconds (the suite is killed after it)
#   E2E_KIND_WORKERS=2         worker nodes
#   E2E_KIND_NODE_IMAGE=       kindest/node image (kind's default when empty)
#   E2E_SKIP_BUILD=1           use concoord/replica:<version> and concoord/operator:<version>
#                              already present locally (e.g. from e2e/docker/build-images.sh)
#   E2E_MAX_WRITE_FAILURES=5   failed client calls allowed per disruptive step
#   E2E_KEEP=1                 keep the kind cluster and the work folder (for debugging)
#   E2E_ARTIFACTS=DIR          where to write diagnostics when a step fails
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=manifests.sh
source "$HERE/manifests.sh"

VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$ROOT/Cargo.toml")"
[ -n "$VERSION" ] || {
  echo "e2e/kind: no [workspace.package] version in $ROOT/Cargo.toml" >&2
  exit 1
}
EXAMPLE="$ROOT/charts/concoord/examples/concoordcluster.yaml"
CHART="$ROOT/charts/concoord"
OPERATOR_NS=concoord-system
NS=concoord-e2e
RELEASE=concoord
NAME="$(sed -n 's/^  name: *\([a-z0-9-]*\) *$/\1/p' "$EXAMPLE" | head -n 1)"
DOMAIN="$NAME.$NS.concoord"
SELECTOR="app.kubernetes.io/name=concoord,app.kubernetes.io/instance=$NAME"
REPLICA_IMAGE=concoord/replica
OPERATOR_IMAGE=concoord/operator
MAX_WRITE_FAILURES="${E2E_MAX_WRITE_FAILURES:-5}"

# ------------------------------------------------------------------ --render DIR

if [ "${1:-}" = "--render" ]; then
  out="${2:?usage: run.sh --render DIR}"
  mkdir -p "$out"
  toolbox_pod "$NS" "concoord-e2e/toolbox:render" "$NAME-client-tls" "$NAME-admin-token" >"$out/toolbox.yaml"
  writer_pod "$NS" writer-render "concoord-e2e/toolbox:render" "$DOMAIN" "$NAME-client-tls" >"$out/writer.yaml"
  stranger_pod "$NS" "concoord-e2e/toolbox:render" "$NAME-client-tls" >"$out/stranger.yaml"
  operator_values "$VERSION" >"$out/operator-values.helm"
  kind_config "${E2E_KIND_WORKERS:-2}" >"$out/kind-config.kind"
  coredns_stanza "$DOMAIN" 10.96.0.53 >"$out/coredns-stanza.txt"
  echo "$out"
  exit 0
fi

# ------------------------------------------------------------------ preconditions

if ! command -v kind >/dev/null 2>&1; then
  echo "SKIP e2e/kind: 'kind' is not installed. This suite needs kind, docker, kubectl, helm and jq" \
    "and network access to pull images; see .github/workflows/e2e-kind.yml."
  exit 0
fi
for tool in docker kubectl helm jq timeout; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "e2e/kind: '$tool' is missing (kind is installed, so the suite runs and needs it)" >&2
    exit 1
  }
done
docker info >/dev/null 2>&1 || {
  echo "e2e/kind: the docker engine does not answer (docker info failed)" >&2
  exit 1
}

# The overall bound: re-run this script under timeout(1). On expiry the suite gets SIGTERM,
# its trap cleans up, and timeout kills what is left 120 s later. timeout runs in its own
# process group, so an interrupt of this script is passed on to it.
if [ -z "${CONCOORD_E2E_BOUNDED:-}" ]; then
  export CONCOORD_E2E_BOUNDED=1
  timeout --kill-after=120 "${E2E_TIMEOUT:-3600}" bash "$0" "$@" &
  bounded=$!
  trap 'kill -TERM "$bounded" 2>/dev/null || true' INT TERM
  status=0
  wait "$bounded" || status=$?
  # A trapped signal ends the first wait early; wait for the cleanup to finish.
  while kill -0 "$bounded" 2>/dev/null; do
    status=0
    wait "$bounded" || status=$?
  done
  [ "$status" = 124 ] && echo "e2e/kind: FAILED: the suite passed its overall bound of ${E2E_TIMEOUT:-3600}s" >&2
  exit "$status"
fi

RUN_ID="$(date +%s | tail -c 6)$(printf '%04x' $((RANDOM)))"
CLUSTER="concoord-e2e-$RUN_ID"
UPGRADE_VERSION="$VERSION-e2e.$RUN_ID"
TOOLBOX_IMAGE="concoord-e2e/toolbox:$RUN_ID"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/concoord-e2e.XXXXXX")"
export KUBECONFIG="$WORK/kubeconfig"
BACKGROUND_PIDS=()
CLUSTER_CREATED=""

diagnostics() {
  local dir="${E2E_ARTIFACTS:-$WORK/artifacts}"
  mkdir -p "$dir"
  echo "e2e/kind: writing diagnostics to $dir" >&2
  kubectl get all,concoordclusters,pvc,configmaps,pdb,serviceaccounts -A -o wide >"$dir/objects.txt" 2>&1 || true
  kubectl get concoordclusters -A -o yaml >"$dir/concoordclusters.yaml" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp >"$dir/events.txt" 2>&1 || true
  kubectl logs -n "$OPERATOR_NS" -l app.kubernetes.io/name=concoord-operator --all-containers --prefix --tail=-1 \
    >"$dir/operator.log" 2>&1 || true
  kubectl logs -n "$NS" -l "$SELECTOR" --all-containers --prefix --tail=2000 >"$dir/replicas.log" 2>&1 || true
  kubectl logs -n "$NS" -l "$SELECTOR" --all-containers --prefix --previous --tail=2000 \
    >"$dir/replicas-previous.log" 2>&1 || true
  kubectl exec -n "$NS" toolbox -- concoord status "$NAME-peers.$NS.svc.cluster.local:14000" \
    >"$dir/concoord-status.txt" 2>&1 || true
  tail -n 40 "$dir/operator.log" >&2 || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${BACKGROUND_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [ "$status" != 0 ] && [ -n "$CLUSTER_CREATED" ]; then
    diagnostics
  fi
  if [ -n "${E2E_KEEP:-}" ]; then
    echo "e2e/kind: E2E_KEEP set: kept kind cluster $CLUSTER (KUBECONFIG=$KUBECONFIG) and $WORK"
  else
    if [ -n "$CLUSTER_CREATED" ]; then
      echo "e2e/kind: deleting kind cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || echo "e2e/kind: could not delete kind cluster $CLUSTER" >&2
    fi
    docker image rm "$REPLICA_IMAGE:$UPGRADE_VERSION" "$TOOLBOX_IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  if [ "$status" = 0 ]; then
    printf '\ne2e/kind: all %d steps passed in %s\n' "$STEP_NO" "$(elapsed)"
  else
    printf '\ne2e/kind: FAILED with status %d after %s\n' "$status" "$(elapsed)" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo "e2e/kind: interrupted" >&2; exit 130' INT
trap 'echo "e2e/kind: terminated (overall bound reached?)" >&2; exit 124' TERM

# ================================================================== the suite

step "tools"
info "kind $(kind version | awk '{print $2}'), $(kubectl version --client | head -n 1), helm $(helm version --short)"
info "docker $(docker version --format '{{.Server.Version}}'), version under test $VERSION, run $RUN_ID"

step "images: $REPLICA_IMAGE:$VERSION, $OPERATOR_IMAGE:$VERSION, upgrade tag $UPGRADE_VERSION, toolbox"
if [ -n "${E2E_SKIP_BUILD:-}" ]; then
  for image in "$REPLICA_IMAGE:$VERSION" "$OPERATOR_IMAGE:$VERSION"; do
    docker image inspect "$image" >/dev/null 2>&1 || fail "E2E_SKIP_BUILD is set but $image is not present"
  done
  info "using the local images (E2E_SKIP_BUILD)"
else
  [ -f "$ROOT/Dockerfile" ] || fail "$ROOT/Dockerfile is missing"
  docker build --target replica --build-arg "VERSION=$VERSION" \
    -t "$REPLICA_IMAGE:$VERSION" -t "$REPLICA_IMAGE:dev" "$ROOT"
  docker build --target operator --build-arg "VERSION=$VERSION" \
    -t "$OPERATOR_IMAGE:$VERSION" -t "$OPERATOR_IMAGE:dev" "$ROOT"
fi
# The second version for the rolling update: the same program in a distinct image (its own
# ID, through a label), so the kubelet really starts new containers.
printf 'FROM %s\nLABEL io.concoord.e2e.upgrade=%s\n' "$REPLICA_IMAGE:$VERSION" "$RUN_ID" |
  docker build -q -t "$REPLICA_IMAGE:$UPGRADE_VERSION" - >/dev/null
docker build -q -f "$HERE/toolbox.Dockerfile" --build-arg "REPLICA_IMAGE=$REPLICA_IMAGE:$VERSION" \
  -t "$TOOLBOX_IMAGE" "$HERE" >/dev/null
[ "$(docker image inspect -f '{{.Id}}' "$REPLICA_IMAGE:$VERSION")" != \
  "$(docker image inspect -f '{{.Id}}' "$REPLICA_IMAGE:$UPGRADE_VERSION")" ] ||
  fail "the upgrade image is not distinct from $REPLICA_IMAGE:$VERSION"
pass "images built"

step "kind cluster $CLUSTER (1 control plane, ${E2E_KIND_WORKERS:-2} workers)"
kind_config "${E2E_KIND_WORKERS:-2}" >"$WORK/kind-config.yaml"
CLUSTER_CREATED=1
kind create cluster --name "$CLUSTER" --config "$WORK/kind-config.yaml" --kubeconfig "$KUBECONFIG" \
  --wait 180s ${E2E_KIND_NODE_IMAGE:+--image "$E2E_KIND_NODE_IMAGE"}
kubectl get nodes -o wide
for image in "$REPLICA_IMAGE:$VERSION" "$REPLICA_IMAGE:$UPGRADE_VERSION" "$OPERATOR_IMAGE:$VERSION" "$TOOLBOX_IMAGE"; do
  kind load docker-image --name "$CLUSTER" "$image" >/dev/null
  info "loaded $image"
done

step "helm install the operator ($RELEASE in $OPERATOR_NS)"
operator_values "$VERSION" >"$WORK/operator-values.yaml"
helm install "$RELEASE" "$CHART" --namespace "$OPERATOR_NS" --create-namespace \
  -f "$WORK/operator-values.yaml" --wait --timeout 5m
kubectl wait --for=condition=Established crd/concoordclusters.concoord.io --timeout=60s
kubectl get deployment -n "$OPERATOR_NS" -o wide

step "helm test (the operator answers /readyz through its metrics Service)"
helm test "$RELEASE" --namespace "$OPERATOR_NS" --timeout 3m --logs

step "operator metrics are Prometheus text"
metrics_svc="$(kubectl get svc -n "$OPERATOR_NS" -l app.kubernetes.io/instance="$RELEASE" -o jsonpath='{.items[0].metadata.name}')"
metrics="$(kubectl get --raw "/api/v1/namespaces/$OPERATOR_NS/services/$metrics_svc:metrics/proxy/metrics")" ||
  fail "GET /metrics through $metrics_svc failed"
grep -q '^# TYPE ' <<<"$metrics" || fail "/metrics is not Prometheus text: $(head -c 300 <<<"$metrics")"
pass "$(grep -c '^# TYPE ' <<<"$metrics") metric families, e.g. $(grep '^# TYPE ' <<<"$metrics" | head -n 3 | awk '{print $3}' | paste -sd, -)"

step "the API server refuses invalid clusters (CRD schema and CEL rules)"
kubectl create namespace "$NS" >/dev/null
refused() {
  local out
  if out="$(kubectl apply -n "$NS" --dry-run=server -f - 2>&1 <<<"$1")"; then
    fail "the API server accepted an invalid cluster ($2)"
  fi
  pass "refused $2: $(tail -n 1 <<<"$out" | cut -c1-200)"
}
refused "$(sed 's/^  replicas: 3$/  replicas: 0/' "$EXAMPLE")" "replicas: 0"
refused "$(sed 's/^  replicas: 3$/  replica: 3/' "$EXAMPLE")" "a misspelt field"

step "apply the example cluster ($EXAMPLE) in $NS"
kubectl apply -n "$NS" -f "$EXAMPLE"
wait_until 600 "$NAME is Available with 3 ready members at its generation" cluster_settled "$NS" "$NAME" 3
kubectl get concoordcluster -n "$NS" "$NAME"
kubectl get statefulset,service,configmap,pdb,serviceaccount,pvc -n "$NS" -l "app.kubernetes.io/instance=$NAME"

step "TLS and auth: the operator's certificates, tokens and NetworkPolicy"
certs="$(kubectl get concoordcluster "$NAME" -n "$NS" -o jsonpath='{range .status.certificates[*]}{.kind}={.notAfter} {end}')"
for kind in ca server client; do
  grep -q "$kind=20" <<<"$certs" || fail "the status lists no $kind certificate with its expiry: $certs"
done
pass "the status lists the certificates: $certs"
for secret in "$NAME-ca" "$NAME-server-tls" "$NAME-client-tls" "$NAME-auth" "$NAME-admin-token" "$NAME-app-token"; do
  kubectl get secret "$secret" -n "$NS" -o name >/dev/null || fail "Secret $secret is missing"
done
pass "Secrets $NAME-{ca,server-tls,client-tls,auth,admin-token,app-token} exist"
kubectl get networkpolicy "$NAME" -n "$NS" -o name >/dev/null || fail "NetworkPolicy $NAME is missing"
pass "NetworkPolicy $NAME exists"

step "immutable settings stay immutable"
refused "$(sed 's/^    size: 1Gi$/    size: 2Gi/' "$EXAMPLE")" "a changed persistence.size"

step "SRV records from an in-cluster pod"
toolbox_pod "$NS" "$TOOLBOX_IMAGE" "$NAME-client-tls" "$NAME-admin-token" | kubectl apply -f - >/dev/null
kubectl wait -n "$NS" --for=condition=Ready pod/toolbox --timeout=120s >/dev/null
dns_svc="$NAME-dns.$NS.svc.cluster.local"
wait_until 60 "the cluster's nameserver answers 3 SRV records over UDP" srv_is 3 "@$dns_svc"
wait_until 30 "... and over TCP" srv_is 3 "@$dns_svc" +tcp
wait_until 60 "cluster DNS answers the peer Service's SRV records" \
  bash -c "n=\$(kubectl exec -n '$NS' toolbox -- dig +short SRV _concoord._tcp.$NAME-peers.$NS.svc.cluster.local | grep -c .); echo \"\$n records\"; [ \"\$n\" = 3 ]"
in_toolbox dig +noall +answer "@$dns_svc" SRV "_concoord._tcp.$DOMAIN."

step "forward $DOMAIN from CoreDNS to the cluster's nameserver (the README's stanza)"
dns_ip="$(kubectl get svc -n "$NS" "$NAME-dns" -o jsonpath='{.spec.clusterIP}')"
[ -n "$dns_ip" ] || fail "service $NAME-dns has no ClusterIP"
corefile="$(kubectl get configmap coredns -n kube-system -o jsonpath='{.data.Corefile}')"
printf '%s\n%s\n' "$corefile" "$(coredns_stanza "$DOMAIN" "$dns_ip")" >"$WORK/Corefile"
kubectl patch configmap coredns -n kube-system --type merge \
  -p "$(jq -n --rawfile c "$WORK/Corefile" '{data: {Corefile: $c}}')" >/dev/null
kubectl rollout restart deployment coredns -n kube-system >/dev/null
kubectl rollout status deployment coredns -n kube-system --timeout=120s
wait_until 60 "the pod's own resolver answers 3 SRV records for $DOMAIN" srv_is 3

step "call objects through SRV discovery"
in_toolbox concoord call --timeout 20s "$DOMAIN" counter increment >/dev/null
in_toolbox env "CONCOORD_DNS_SERVER=$dns_svc:53" concoord call --timeout 20s "$DOMAIN" counter increment >/dev/null
value="$(counter_value)" || fail "counter getvalue: $value"
[ "$value" = 2 ] || fail "counter is $value after two increments of a new cluster, expected 2"
pass "counter increment twice (system resolver, then --dns-server): getvalue = 2"
locked="$(in_toolbox concoord call --timeout 20s "$DOMAIN" --list)"
grep -q '"lock"' <<<"$locked" || fail "the example's lock object is missing: $locked"
pass "objects created at bootstrap: $locked"

step "a pod without the client Secret is refused; the app token lets it in"
stranger_pod "$NS" "$TOOLBOX_IMAGE" "$NAME-client-tls" | kubectl apply -f - >/dev/null
kubectl wait -n "$NS" --for=condition=Ready pod/stranger --timeout=120s >/dev/null
if out="$(kubectl exec -n "$NS" stranger -- concoord call --timeout 20s "$DOMAIN" counter increment 2>&1)"; then
  fail "a pod with neither the client certificate nor a token was let in: $out"
fi
grep -q PermissionError <<<"$out" || fail "refused, but not with PermissionError: $out"
pass "with the CA alone: $(grep -m 1 PermissionError <<<"$out" | cut -c1-200)"
if out="$(kubectl exec -n "$NS" stranger -- env -u CONCOORD_CA concoord call --timeout 20s "$DOMAIN" counter getvalue 2>&1)"; then
  fail "a plaintext client was answered by a TLS replica: $out"
fi
grep -q "TLS only" <<<"$out" || fail "a plaintext client was refused without saying why: $out"
pass "in plaintext: $(grep -m 1 'TLS only' <<<"$out" | cut -c1-200)"
before="$(counter_value)" || fail "counter getvalue: $before"
app_token="$(kubectl get secret "$NAME-app-token" -n "$NS" -o jsonpath='{.data.token}' | base64 -d)"
[ -n "$app_token" ] || fail "Secret $NAME-app-token holds no token"
kubectl exec -n "$NS" stranger -- env "CONCOORD_TOKEN=$app_token" concoord call --timeout 20s "$DOMAIN" counter increment >/dev/null ||
  fail "the app token of Secret $NAME-app-token was refused"
after="$(counter_value)" || fail "counter getvalue: $after"
[ "$after" = $((before + 1)) ] || fail "counter went from $before to $after with one increment"
pass "with the token of Secret $NAME-app-token: counter $before -> $after"
kubectl delete pod stranger -n "$NS" --wait=false >/dev/null

step "renew the replicas' certificate: no pod restarts, the leader stays"
leader_before="$(ccc_field "$NS" "$NAME" .status.leader)"
pods_before="$(kubectl get pods -n "$NS" -l "$SELECTOR" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid}/{.status.containerStatuses[0].restartCount} {end}')"
server_expiry() { kubectl get concoordcluster "$NAME" -n "$NS" -o jsonpath='{.status.certificates[?(@.kind=="server")].notAfter}'; }
expiry_before="$(server_expiry)"
kubectl delete secret "$NAME-server-tls" -n "$NS" >/dev/null
renewed() {
  local now
  now="$(server_expiry)"
  echo "server certificate valid until ${now:-?}"
  [ -n "$now" ] && [ "$now" != "$expiry_before" ]
}
wait_until 180 "the operator issued a new server certificate" renewed
reloaded() {
  local n
  n="$(kubectl logs -n "$NS" -l "$SELECTOR" --prefix --tail=-1 | grep 'TLS: certificates re-read' | awk '{print $1}' | sort -u | grep -c .)"
  echo "$n of 3 replicas re-read their certificate"
  [ "$n" -ge 3 ]
}
wait_until 300 "every replica picked the new certificate up from its files" reloaded
pods_after="$(kubectl get pods -n "$NS" -l "$SELECTOR" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid}/{.status.containerStatuses[0].restartCount} {end}')"
[ "$pods_after" = "$pods_before" ] || fail "pods were replaced or restarted: $pods_before -> $pods_after"
leader="$(ccc_field "$NS" "$NAME" .status.leader)"
[ "$leader" = "$leader_before" ] || fail "the leader moved from $leader_before to $leader"
value="$(counter_value)" || fail "no call after the renewal: $value"
pass "same pods and restart counts ($pods_after), leader $leader, calls go on (counter $value)"

step "user-defined object types from a ConfigMap (spec.objectTypes)"
# The example's ConfigMap holds the seed's TenCounter: the operator defines it in the group.
source_sha() { kubectl get configmap demo-types -n "$NS" -o jsonpath='{.data.tencounter\.py}' | sha256sum | cut -d' ' -f1; }
type_status() { kubectl get concoordcluster "$NAME" -n "$NS" -o jsonpath='{.status.objectTypes[0].name} {.status.objectTypes[0].sha256}|{.status.conditions[?(@.type=="Degraded")].reason}|{.status.conditions[?(@.type=="Degraded")].message}'; }
type_is() {
  local line
  line="$(type_status)" || return 1
  echo "$line"
  [[ "$line" == "tencounter.TenCounter $1|$2"* ]]
}
wait_until 120 "status lists tencounter.TenCounter with the ConfigMap's sha256" type_is "$(source_sha)" AllHealthy
in_toolbox concoord type list "$DOMAIN"
in_toolbox concoord call --timeout 20s "$DOMAIN" --create tens tencounter.TenCounter >/dev/null
in_toolbox concoord call --timeout 20s "$DOMAIN" tens increment >/dev/null
in_toolbox concoord call --timeout 20s "$DOMAIN" tens increment >/dev/null
shown="$(in_toolbox concoord call --timeout 20s "$DOMAIN" tens __str__)"
[ "$shown" = '"The counter value is 20"' ] || fail "tens.__str__ answered $shown"
pass "the seed's TenCounter through SRV discovery: $shown"
good_sha="$(source_sha)"
kubectl create configmap demo-types -n "$NS" --dry-run=client -o yaml \
  --from-literal=tencounter.py="$(printf 'class TenCounter(:\n    pass\n')" | kubectl apply -f - >/dev/null
wait_until 120 "a broken class sets Degraded (ObjectTypeRejected) and the old code keeps running" \
  type_is "$good_sha" "ObjectTypeRejected|demo-types/tencounter.py: SyntaxError"
value="$(in_toolbox concoord call --timeout 20s "$DOMAIN" tens getvalue)"
[ "$value" = 20 ] || fail "tens is $value after a refused definition, expected 20"
pass "tens still answers getvalue = 20"
printf 'class TenCounter:\n    def __init__(self, value=0):\n        self.value = value\n\n    def increment(self):\n        self.value += 100\n\n    def getvalue(self):\n        return self.value\n' >"$WORK/tencounter.py"
kubectl create configmap demo-types -n "$NS" --dry-run=client -o yaml \
  --from-file=tencounter.py="$WORK/tencounter.py" | kubectl apply -f - >/dev/null
new_sha="$(sha256sum <"$WORK/tencounter.py" | cut -d' ' -f1)"
wait_until 120 "the changed ConfigMap replaces the code and Degraded clears" type_is "$new_sha" AllHealthy
in_toolbox concoord call --timeout 20s "$DOMAIN" tens increment >/dev/null
value="$(in_toolbox concoord call --timeout 20s "$DOMAIN" tens getvalue)"
[ "$value" = 120 ] || fail "tens is $value after the replace and one increment, expected 120"
pass "the replaced code runs on the kept state: getvalue = 120"

step "scale 3 -> 5 -> 3 while a client writes"
start_writer writer-scale
kubectl scale concoordcluster "$NAME" -n "$NS" --replicas=5
wait_until 600 "5 ready members" cluster_settled "$NS" "$NAME" 5
wait_until 60 "SRV lists 5 replicas" srv_is 5
acked="$(writer_acked writer-scale)"
wait_until 60 "the writer keeps writing to 5 replicas" writer_progress writer-scale $((acked + 10))
kubectl scale concoordcluster "$NAME" -n "$NS" --replicas=3
wait_until 600 "back to 3 ready members" cluster_settled "$NS" "$NAME" 3
wait_until 60 "SRV lists 3 replicas" srv_is 3
wait_until 120 "the StatefulSet is back to 3 pods" pods_ready "$NS" "$SELECTOR" 3
stop_writer writer-scale

step "delete a follower pod, then the leader pod"
start_writer writer-failover
follower="$(kubectl get concoordcluster "$NAME" -n "$NS" -o jsonpath='{.status.members[?(@.leader==false)].name}' | awk '{print $1}')"
[ -n "$follower" ] || fail "status lists no follower"
leader_before="$(ccc_field "$NS" "$NAME" .status.leader)"
uid="$(kubectl get pod "$follower" -n "$NS" -o jsonpath='{.metadata.uid}')"
info "deleting follower $follower (leader $leader_before)"
kubectl delete pod "$follower" -n "$NS" --wait=false
wait_until 300 "$follower is back and Ready" pod_replaced "$NS" "$follower" "$uid"
wait_until 300 "3 ready members again" cluster_settled "$NS" "$NAME" 3
leader="$(ccc_field "$NS" "$NAME" .status.leader)"
[ -n "$leader" ] || fail "status names no leader"
# A member that restarts must not depose a leader that a majority still hears (pre-vote).
[ "$leader" = "$leader_before" ] ||
  fail "the leader changed from $leader_before to $leader when follower $follower restarted"
pass "$leader_before still leads after $follower restarted"
uid="$(kubectl get pod "$leader" -n "$NS" -o jsonpath='{.metadata.uid}')"
view_before="$(ccc_field "$NS" "$NAME" .status.view)"
info "deleting leader $leader (view $view_before)"
kubectl delete pod "$leader" -n "$NS" --wait=false
wait_until 120 "another member leads" leader_is_not "$NS" "$NAME" "$leader"
wait_until 300 "$leader is back and Ready" pod_replaced "$NS" "$leader" "$uid"
wait_until 300 "3 ready members again" cluster_settled "$NS" "$NAME" 3
stop_writer writer-failover

step "rolling update to $REPLICA_IMAGE:$UPGRADE_VERSION without losing quorum"
start_writer writer-upgrade
leader_before="$(ccc_field "$NS" "$NAME" .status.leader)"
: >"$WORK/ready-samples"
ready_watch "$WORK/ready-samples" &
BACKGROUND_PIDS+=("$!")
kubectl patch concoordcluster "$NAME" -n "$NS" --type merge -p "{\"spec\":{\"version\":\"$UPGRADE_VERSION\"}}"
wait_until 900 "all 3 pods run $UPGRADE_VERSION and are Ready" \
  pods_ready "$NS" "$SELECTOR" 3 "$REPLICA_IMAGE:$UPGRADE_VERSION"
wait_until 300 "the cluster settles at the new generation" cluster_settled "$NS" "$NAME" 3
kill "${BACKGROUND_PIDS[-1]}" 2>/dev/null || true
min_ready="$(sort -n "$WORK/ready-samples" | head -n 1)"
info "ready replica pods during the update: min ${min_ready:-?} over $(wc -l <"$WORK/ready-samples") one-second samples"
if [ -z "$min_ready" ] || [ "$min_ready" -lt 2 ]; then
  fail "quorum lost during the rolling update: only ${min_ready:-?} of 3 replicas were ready at one point"
fi
pass "a majority (>= 2 of 3) stayed ready throughout"
last_rolled="$(kubectl get pods -n "$NS" -l "$SELECTOR" --sort-by=.metadata.creationTimestamp -o jsonpath='{.items[-1:].metadata.name}')"
[ "$last_rolled" = "$leader_before" ] ||
  fail "the leader before the update ($leader_before) was not restarted last ($last_rolled was)"
pass "the leader ($leader_before) was restarted last"
stop_writer writer-upgrade

step "delete the cluster; every object it owned goes"
cr_uid="$(ccc_field "$NS" "$NAME" .metadata.uid)"
owned="$(owned_objects "$cr_uid")"
info "owned by $NAME: ${owned//$'\n'/ }"
for kind in StatefulSet Service ConfigMap PodDisruptionBudget ServiceAccount Secret NetworkPolicy; do
  grep -q "^$kind/" <<<"$owned" || fail "$NAME owns no $kind (expected one, per the operator's interface)"
done
kubectl delete concoordcluster "$NAME" -n "$NS" --timeout=180s
wait_until 300 "nothing $NAME owned is left" nothing_owned_left "$cr_uid"
pvcs="$(kubectl get pvc -n "$NS" -o name)"
info "persistent volume claims after deletion: ${pvcs:-none}${pvcs:+ (kept, as StatefulSets keep their claims unless told otherwise)}"
kubectl delete pod toolbox -n "$NS" --wait=false >/dev/null

step "helm uninstall"
helm uninstall "$RELEASE" --namespace "$OPERATOR_NS" --wait --timeout 3m
wait_until 120 "the operator is gone" \
  bash -c "[ -z \"\$(kubectl get deployment,pods -n '$OPERATOR_NS' -l app.kubernetes.io/instance=$RELEASE -o name)\" ]"
