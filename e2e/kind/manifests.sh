# shellcheck shell=bash
# The objects the kind suite creates besides the chart and the example (sourced by run.sh).
# Each function prints YAML; `run.sh --render DIR` writes them out so CI validates them
# against the Kubernetes schemas (charts/check.sh) without a cluster.

# kind_config WORKERS: one control-plane node and WORKERS workers, so the replicas' preferred
# anti-affinity has nodes to spread over.
kind_config() {
  local i
  cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
YAML
  for ((i = 0; i < $1; i++)); do
    echo "  - role: worker"
  done
}

# operator_values VERSION: Helm values for the operator under test (images loaded by kind).
operator_values() {
  cat <<YAML
image:
  repository: concoord/operator
  tag: "$1"
  pullPolicy: Never
logLevel: info,concoord_operator=debug
YAML
}

# Security settings shared by the suite's own pods.
pod_security() {
  cat <<'YAML'
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
YAML
}

container_security() {
  cat <<'YAML'
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
YAML
}

# toolbox_pod NAMESPACE IMAGE: dig and the concoord client, for queries from inside.
toolbox_pod() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: toolbox
  namespace: $1
  labels:
    app.kubernetes.io/name: concoord-e2e
    app.kubernetes.io/component: toolbox
spec:
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
$(pod_security)
  containers:
    - name: toolbox
      image: $2
      imagePullPolicy: Never
      command: ["sleep", "infinity"]
$(container_security)
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {memory: 128Mi}
YAML
}

# writer_pod NAMESPACE NAME IMAGE DOMAIN: increments the counter through the domain's SRV
# records until told to stop, counting acknowledged and failed calls (e2e-writer).
writer_pod() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $2
  namespace: $1
  labels:
    app.kubernetes.io/name: concoord-e2e
    app.kubernetes.io/component: writer
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
$(pod_security)
  containers:
    - name: writer
      image: $3
      imagePullPolicy: Never
      command: ["e2e-writer", "$4", "counter"]
$(container_security)
      resources:
        requests: {cpu: 50m, memory: 16Mi}
        limits: {memory: 128Mi}
YAML
}

# coredns_stanza DOMAIN SERVER_IP: forward DOMAIN from cluster DNS to the cluster's own
# nameserver (the stanza the README shows).
coredns_stanza() {
  cat <<EOT
$1:53 {
    errors
    cache 5
    forward . $2
}
EOT
}
