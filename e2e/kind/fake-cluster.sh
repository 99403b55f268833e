#!/usr/bin/env bash
# A simulated kind/docker/helm/kubectl world for selftest.sh: `fake-cluster.sh TOOL ARGS...`
# answers as TOOL would on an ideal cluster whose operator converges at once. It lets the
# whole of run.sh execute here, step by step, so a broken command line, a wrong JSONPath or a
# check that cannot pass is found without kind. Object fields are still read by the real
# kubectl (`kubectl label --local -o jsonpath`) from objects rendered from the state below.
#
# State: $FAKE_STATE (files). The replica version under test: $FAKE_VERSION.
# FAKE_LOSE_WRITES=N makes the cluster drop every other acknowledged increment after the Nth.
# FAKE_NEVER_AVAILABLE=1 keeps the cluster's Available condition False.
set -euo pipefail
tool=$1
shift
S="${FAKE_STATE:?}"
REAL_KUBECTL="${REAL_KUBECTL:?}"
NAME=demo
# Each call renders into its own file: the suite queries from two processes at once.
R="$(mktemp "$S/render.XXXXXX")"
trap 'rm -f "$R"' EXIT

log() { echo "$tool $*" >>"$S/calls.log"; }
next_seq() {
  local n
  n=$(($(cat "$S/seq" 2>/dev/null || echo 0) + 1))
  echo "$n" >"$S/seq"
  echo "$n"
}

# ------------------------------------------------------------------ the cluster's state

replicas() { cat "$S/replicas"; }
generation_bump() { echo $(($(cat "$S/generation") + 1)) >"$S/generation"; }

# pods file: "name uid seq image" per replica pod
make_pod() { echo "$1 uid-$1-$(next_seq) $(cat "$S/seq") concoord/replica:$(cat "$S/version")"; }

set_replicas() {
  local want=$1 i
  : >"$S/pods.new"
  for ((i = 0; i < want; i++)); do
    if grep -q "^$NAME-$i " "$S/pods" 2>/dev/null; then
      grep "^$NAME-$i " "$S/pods" >>"$S/pods.new"
    else
      make_pod "$NAME-$i" >>"$S/pods.new"
    fi
  done
  mv "$S/pods.new" "$S/pods"
  echo "$want" >"$S/replicas"
}

recreate_pod() {
  local pod=$1
  grep -v "^$pod " "$S/pods" >"$S/pods.new" || true
  make_pod "$pod" >>"$S/pods.new"
  mv "$S/pods.new" "$S/pods"
}

# The user type the operator would define from the ConfigMap demo-types: the sha256 of
# the last source that compiles ("(:" marks a syntax error), and Degraded while the current
# source does not.
types_status() {
  local sha degraded='{type: Degraded, status: "False", reason: AllHealthy, message: ok, lastTransitionTime: "2026-01-01T00:00:00Z"}'
  [ -f "$S/types-source" ] || {
    echo "  conditions:"
    return
  }
  if grep -q '(:' "$S/types-source"; then
    degraded='{type: Degraded, status: "True", reason: ObjectTypeRejected, message: "demo-types/tencounter.py: SyntaxError: invalid syntax", lastTransitionTime: "2026-01-01T00:00:00Z"}'
  else
    sha256sum <"$S/types-source" | cut -d' ' -f1 >"$S/types-sha"
    cp "$S/types-source" "$S/types-running"
  fi
  sha="$(cat "$S/types-sha" 2>/dev/null || true)"
  [ -z "$sha" ] || printf '  objectTypes:\n  - {name: tencounter.TenCounter, sha256: "%s", source: demo-types/tencounter.py}\n' "$sha"
  echo "  conditions:"
  echo "  - $degraded"
}

ccc_yaml() {
  local i leader members="" available=True
  # FAKE_NEVER_AVAILABLE=1: a cluster that never comes up (the overall bound must strike).
  [ -n "${FAKE_NEVER_AVAILABLE:-}" ] && available=False
  leader="$(cat "$S/leader")"
  for ((i = 0; i < $(replicas); i++)); do
    members+="  - {name: $NAME-$i, address: \"$NAME-$i.$NAME-peers:14000\", id: $((i + 1)), leader: $([ "$NAME-$i" = "$leader" ] && echo true || echo false), healthy: true, learner: false}"$'\n'
  done
  cat <<EOF
apiVersion: concoord.io/v1alpha1
kind: ConCoordCluster
metadata: {name: $NAME, namespace: concoord-e2e, generation: $(cat "$S/generation"), uid: cr-uid}
spec: {replicas: $(replicas), version: "$(cat "$S/version")"}
status:
  observedGeneration: $(cat "$S/generation")
  replicas: $(replicas)
  readyReplicas: $(replicas)
  leader: $leader
  view: $(cat "$S/seq")
  certificates:
  - {secret: $NAME-ca, kind: ca, notAfter: "2036-12-01T00:00:00Z"}
  - {secret: $NAME-server-tls, kind: server, notAfter: "$(cat "$S/server-expiry")"}
  - {secret: $NAME-client-tls, kind: client, notAfter: "2027-03-01T00:00:00Z"}
  members:
$members$(types_status)
  - {type: Available, status: "$available", reason: Quorum, message: ok, lastTransitionTime: "2026-01-01T00:00:00Z"}
EOF
}

pod_yaml() { # name uid seq image
  cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: concoord-e2e, uid: $2, labels: {seq: "$3"}}
spec: {containers: [{name: replica, image: "$4"}]}
status: {conditions: [{type: Ready, status: "True"}]}
EOF
}

pods_yaml() { # all pods, oldest first
  local name uid seq image
  [ -f "$S/pods" ] || return 0
  sort -k3 -n "$S/pods" | while read -r name uid seq image; do pod_yaml "$name" "$uid" "$seq" "$image"; done
}

jsonpath_of() { # FILE EXPR
  [ -s "$1" ] || return 0
  "$REAL_KUBECTL" label --local -f "$1" fake=1 --kubeconfig /dev/null -o "jsonpath=$2"
}

owned_json() {
  if [ ! -f "$S/ccc" ]; then
    echo '{"items": []}'
    return
  fi
  local items="" kind name
  for kind_name in StatefulSet/$NAME Service/$NAME Service/$NAME-peers Service/$NAME-dns \
    ConfigMap/$NAME-bootstrap PodDisruptionBudget/$NAME ServiceAccount/$NAME \
    Secret/$NAME-ca Secret/$NAME-server-tls Secret/$NAME-client-tls Secret/$NAME-auth \
    Secret/$NAME-admin-token Secret/$NAME-app-token NetworkPolicy/$NAME; do
    kind=${kind_name%/*} name=${kind_name#*/}
    items+="${items:+,}{\"kind\": \"$kind\", \"metadata\": {\"name\": \"$name\", \"ownerReferences\": [{\"uid\": \"cr-uid\"}]}}"
  done
  echo "{\"items\": [$items, {\"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"kube-root-ca.crt\"}}]}"
}

# ------------------------------------------------------------------ kubectl

kubectl_get() {
  local output="" sort_by="" raw="" args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      -n | -l) shift ;;
      -o) output=$2 && shift ;;
      -o*) output=${1#-o} ;;
      --sort-by=*) sort_by=${1#--sort-by=} ;;
      --raw) raw=$2 && shift ;;
      -*) ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  if [ -n "$raw" ]; then
    printf '# HELP concoord_operator_reconciles_total Reconciles.\n# TYPE concoord_operator_reconciles_total counter\nconcoord_operator_reconciles_total 3\n'
    return
  fi
  local type=${args[0]} name=${args[1]:-} expr=${output#jsonpath=}
  case "$type" in
    concoordcluster | concoordclusters)
      [ -f "$S/ccc" ] || {
        echo "Error from server (NotFound): concoordclusters.concoord.io \"$name\" not found" >&2
        return 1
      }
      ccc_yaml >"$R"
      if [ -z "$output" ]; then
        echo "NAME REPLICAS READY LEADER VIEW"
        echo "$NAME $(replicas) $(replicas) $(cat "$S/leader") $(cat "$S/seq")"
      else
        jsonpath_of "$R" "$expr"
      fi
      ;;
    pod)
      local line
      line="$(grep "^$name " "$S/pods" 2>/dev/null)" || {
        echo "Error from server (NotFound): pods \"$name\" not found" >&2
        return 1
      }
      # shellcheck disable=SC2086 # the line is "name uid seq image"
      pod_yaml $line >"$R"
      jsonpath_of "$R" "$expr"
      ;;
    pods)
      pods_yaml >"$R"
      if [ "$output" = name ]; then
        jsonpath_of "$R" 'pod/{.metadata.name}{"\n"}'
      elif [ -n "$sort_by" ] && [ "$expr" = '{.items[-1:].metadata.name}' ]; then
        sort -k3 -n "$S/pods" | tail -n 1 | awk '{printf "%s", $1}'
      elif [[ "$expr" =~ ^\{range\ \.items\[\*\]\}(.*)\{end\}$ ]]; then
        jsonpath_of "$R" "${BASH_REMATCH[1]}"
      else
        echo "fake kubectl: unsupported pods query $output" >&2
        return 1
      fi
      ;;
    svc)
      case "$expr" in
        '{.items[0].metadata.name}') printf 'concoord-operator-metrics' ;;
        '{.spec.clusterIP}') printf '10.96.77.7' ;;
        *) return 1 ;;
      esac
      ;;
    configmap)
      if [ "$name" = demo-types ]; then
        cat "$S/types-source"
      else
        printf '.:53 {\n    forward . /etc/resolv.conf\n}'
      fi
      ;;
    pvc) if [ -f "$S/pods" ]; then printf 'persistentvolumeclaim/data-%s-0\n' "$NAME"; fi ;;
    secret)
      [ -f "$S/ccc" ] || return 1
      case "$output" in
        name) echo "secret/$name" ;;
        'jsonpath={.data.token}') printf 'fake-app-token-0123456789' | base64 ;;
        *) return 1 ;;
      esac
      ;;
    networkpolicy) if [ -f "$S/ccc" ]; then echo "networkpolicy.networking.k8s.io/$name"; else return 1; fi ;;
    deployment,pods) if [ -f "$S/operator" ]; then echo "deployment.apps/concoord-operator"; fi ;;
    *,*)
      if [ "$output" = json ]; then owned_json; else echo "(fake) $type"; fi
      ;;
    *) echo "(fake) $type $name" ;;
  esac
}

kubectl_apply() {
  local ns="" dry="" file="" manifest
  while [ $# -gt 0 ]; do
    case "$1" in
      -n) ns=$2 && shift ;;
      --dry-run=server) dry=1 ;;
      -f) file=$2 && shift ;;
    esac
    shift
  done
  if [ "$file" = - ]; then manifest="$(cat)"; else manifest="$(cat "$file")"; fi
  if [ -n "$dry" ]; then
    if grep -q '^  replicas: 0$' <<<"$manifest"; then
      echo "The ConCoordCluster \"$NAME\" is invalid: spec.replicas: Invalid value: replicas must be at least 1" >&2
      return 1
    elif grep -q '^  replica: ' <<<"$manifest"; then
      echo "Error from server (BadRequest): strict decoding error: unknown field \"spec.replica\"" >&2
      return 1
    elif [ -f "$S/ccc" ] && ! grep -q '^    size: 1Gi$' <<<"$manifest"; then
      echo "The ConCoordCluster \"$NAME\" is invalid: spec.persistence: Invalid value: persistence is immutable (enabled, size, storageClassName)" >&2
      return 1
    fi
    echo "concoordcluster.concoord.io/$NAME configured (server dry run)"
    return 0
  fi
  local kind pod
  kind="$(sed -n 's/^kind: *//p' <<<"$manifest" | head -n 1)"
  pod="$(sed -n 's/^  name: *//p' <<<"$manifest" | head -n 1)"
  case "$kind" in
    ConCoordCluster)
      touch "$S/ccc"
      echo 1 >"$S/generation"
      cat <<<"$FAKE_VERSION" >"$S/version"
      echo "$NAME-1" >"$S/leader"
      echo 0 >"$S/counter"
      echo "2027-03-01T00:00:00Z" >"$S/server-expiry"
      set_replicas "$(sed -n 's/^  replicas: *//p' <<<"$manifest")"
      # The example's ConfigMap: the block under `tencounter.py: |`, de-indented.
      sed -n '/^  tencounter.py: |$/,$p' <<<"$manifest" | sed '1d; s/^    //' >"$S/types-source"
      echo "concoordcluster.concoord.io/$NAME created (in $ns)"
      ;;
    ConfigMap)
      # From the fake `kubectl create configmap --dry-run=client -o yaml` below.
      cp "$(sed -n 's/^# fake-source: //p' <<<"$manifest")" "$S/types-source"
      echo "configmap/$pod configured"
      ;;
    Pod)
      if grep -q e2e-writer <<<"$manifest"; then
        mkdir -p "$S/$pod"
        E2E_WRITER_DIR="$S/$pod" bash "$FAKE_HERE/writer.sh" "$NAME.concoord-e2e.concoord" counter \
          >/dev/null 2>&1 </dev/null &
        echo "$!" >"$S/$pod/pid"
        echo "$!" >>"$S/pids"
      fi
      echo "pod/$pod created"
      ;;
    *) echo "fake kubectl: apply of $kind" >&2 && return 1 ;;
  esac
}

kubectl_exec() {
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
    "$@"
  elif [ "$pod" = stranger ]; then
    # The CA alone, as the stranger pod's manifest mounts it.
    CONCOORD_CA=/etc/concoord/ca/ca.crt FAKE_STRANGER=1 "$@"
  else
    local args=("${@//\/tmp\//$S/$pod/}")
    "${args[@]}"
  fi
}

kubectl_delete() {
  local type=$1 name=$2 leader
  case "$type" in
    pod)
      if [ -f "$S/$name/pid" ]; then
        kill "$(cat "$S/$name/pid")" 2>/dev/null || true
      elif grep -q "^$name " "$S/pods" 2>/dev/null; then
        recreate_pod "$name"
        leader="$(cat "$S/leader")"
        if [ "$name" = "$leader" ]; then
          awk -v l="$leader" '$1 != l {print $1; exit}' "$S/pods" >"$S/leader"
        fi
      fi
      ;;
    concoordcluster)
      rm -f "$S/ccc" "$S/pods"
      ;;
    secret)
      # The operator issues the replicas' certificate again; the replicas re-read it.
      if [ "$name" = "$NAME-server-tls" ]; then
        echo "2027-03-01T00:10:00Z" >"$S/server-expiry"
        touch "$S/reloaded"
      fi
      ;;
  esac
  echo "$type \"$name\" deleted"
}

kubectl_patch() {
  local type=$1 patch="" v pod leader
  while [ $# -gt 0 ]; do
    [ "$1" = -p ] && patch=$2
    shift
  done
  [ "$type" = concoordcluster ] || return 0
  v="$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' <<<"$patch")"
  echo "$v" >"$S/version"
  generation_bump
  # Roll followers first (highest ordinal first), the leader last.
  leader="$(cat "$S/leader")"
  awk '{print $1}' "$S/pods" | sort -r >"$S/roll-order"
  while read -r pod; do
    [ "$pod" = "$leader" ] || recreate_pod "$pod"
  done <"$S/roll-order"
  recreate_pod "$leader"
}

fake_kubectl() {
  log "$@"
  local verb=$1
  shift
  case "$verb" in
    version) "$REAL_KUBECTL" version "$@" ;;
    get) kubectl_get "$@" ;;
    apply) kubectl_apply "$@" ;;
    exec) kubectl_exec "$@" ;;
    delete) kubectl_delete "$@" ;;
    patch) kubectl_patch "$@" ;;
    scale)
      local n
      n="$(printf '%s\n' "$@" | sed -n 's/^--replicas=//p')"
      set_replicas "$n"
      generation_bump
      echo "concoordcluster.concoord.io/$NAME scaled"
      ;;
    api-resources) printf '%s\n' pods services configmaps serviceaccounts secrets statefulsets.apps poddisruptionbudgets.policy networkpolicies.networking.k8s.io events ;;
    create)
      if [ "${1:-}" = configmap ]; then
        local arg source="$S/created-source"
        for arg in "$@"; do
          case "$arg" in
            --from-literal=*) printf '%s\n' "${arg#--from-literal=*=}" >"$source" ;;
            --from-file=*) cp "${arg#--from-file=*=}" "$source" ;;
          esac
        done
        printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n# fake-source: %s\n' "$2" "$source"
      else
        echo "(fake) $verb ok"
      fi
      ;;
    logs)
      if [ -f "$S/reloaded" ]; then
        awk '{printf "[pod/%s/concoord] INFO concoord::runtime: TLS: certificates re-read from /etc/concoord/tls/tls.crt\n", $1}' "$S/pods"
      else
        echo "(fake) logs ok"
      fi
      ;;
    wait | rollout) echo "(fake) $verb ok" ;;
    *) echo "fake kubectl: unexpected $verb $*" >&2 && return 1 ;;
  esac
}

# ------------------------------------------------------------------ kind, docker, helm, in-pod tools

fake_kind() {
  log "$@"
  case "$1" in
    version) echo "kind v0.27.0-fake go1.24 linux/amd64" ;;
    create) echo "Creating cluster (fake)" ;;
    load)
      local image=${*: -1}
      grep -q "^$image " "$S/images" || {
        echo "ERROR: image: \"$image\" not present locally" >&2
        return 1
      }
      ;;
    delete) echo "Deleting cluster (fake)" ;;
    *) return 1 ;;
  esac
}

fake_docker() {
  log "$@"
  case "$1" in
    info) echo "fake engine" ;;
    version) echo "27.0.0-fake" ;;
    build)
      local tags=() id
      id="sha256:$(printf '%s' "$*" | md5sum | cut -c1-16)"
      while [ $# -gt 0 ]; do
        case "$1" in
          -t) tags+=("$2") && shift ;;
          -) cat >/dev/null ;; # the Dockerfile comes on stdin
        esac
        shift
      done
      for t in "${tags[@]}"; do echo "$t $id" >>"$S/images"; done
      ;;
    image)
      case "$2" in
        inspect)
          local image=${*: -1} line
          line="$(grep "^$image " "$S/images" | tail -n 1)" || return 1
          awk '{printf "%s\n", $2}' <<<"$line"
          ;;
        rm) return 0 ;;
      esac
      ;;
    *) return 1 ;;
  esac
}

fake_helm() {
  log "$@"
  case "$1" in
    version) echo "v4.1.4-fake" ;;
    install)
      # Render for real, with the suite's values, so a chart that does not render fails.
      local args=() release=$2 chart=$3
      shift 3
      while [ $# -gt 0 ]; do
        case "$1" in
          -f | --namespace) args+=("$1" "$2") && shift ;;
        esac
        shift
      done
      "$REAL_HELM" template "$release" "$chart" "${args[@]}" >"$S/helm-rendered.yaml"
      touch "$S/operator"
      echo "NAME: $release STATUS: deployed (fake)"
      ;;
    test) echo "Phase: Succeeded (fake)" ;;
    uninstall) rm -f "$S/operator" && echo "release uninstalled (fake)" ;;
    *) return 1 ;;
  esac
}

fake_concoord() {
  # The stranger pod: TLS replicas with auth refuse it unless it shows a token.
  if [ -n "${FAKE_STRANGER:-}" ]; then
    if [ -z "${CONCOORD_CA:-}" ]; then
      echo "concoord: no replica reachable: refused the connection: this replica serves TLS only: connect with --ca (the group's CA certificate)" >&2
      return 1
    fi
    if [ -z "${CONCOORD_TOKEN:-}" ]; then
      echo "concoord: PermissionError: refused the connection: this group requires authentication" >&2
      return 1
    fi
  fi
  if [ "$1" = type ]; then
    echo "tencounter.TenCounter	sha256:$(cat "$S/types-sha")	(fake)"
    return 0
  fi
  [ "$1" = call ] || {
    echo "fake status"
    return 0
  }
  local method=${*: -1} value n step=10
  if [ "$method" = tencounter.TenCounter ]; then
    echo 0 >"$S/tens"
    return 0
  fi
  if [ "${*: -2:1}" = tens ]; then
    value="$(cat "$S/tens")"
    grep -q '+= 100' "$S/types-running" && step=100
    case "$method" in
      increment) echo $((value + step)) >"$S/tens" ;;
      getvalue) echo "$value" ;;
      __str__) echo "\"The counter value is $value\"" ;;
      *) return 1 ;;
    esac
    return 0
  fi
  value="$(cat "$S/counter")"
  case "$method" in
    --list) echo '{"counter":"Counter","lock":"Lock"}' ;;
    getvalue) echo "$value" ;;
    increment)
      n=$(($(cat "$S/increments" 2>/dev/null || echo 0) + 1))
      echo "$n" >"$S/increments"
      if [ -n "${FAKE_LOSE_WRITES:-}" ] && [ "$n" -gt "$FAKE_LOSE_WRITES" ] && [ $((n % 2)) = 0 ]; then
        return 0
      fi
      echo $((value + 1)) >"$S/counter"
      ;;
    *) return 1 ;;
  esac
}

fake_dig() {
  local i
  for ((i = 0; i < $(replicas); i++)); do
    echo "0 100 14000 $NAME-$i.$NAME-peers.concoord-e2e.svc.cluster.local."
  done
}

case "$tool" in
  kubectl) fake_kubectl "$@" ;;
  kind) fake_kind "$@" ;;
  docker) fake_docker "$@" ;;
  helm) fake_helm "$@" ;;
  concoord) fake_concoord "$@" ;;
  dig) fake_dig "$@" ;;
  *) echo "fake-cluster.sh: no fake $tool" >&2 && exit 2 ;;
esac
