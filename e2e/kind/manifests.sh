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

# client_credentials [TOKEN_SECRET]: the application's client certificate (mounted from the
# volume client_volume adds), named to the concoord CLI by its environment; with
# TOKEN_SECRET, also that Secret's token (a token decides over the certificate).
client_credentials() {
  cat <<YAML
      env:
        - {name: CONCOORD_CA, value: /etc/concoord/client/ca.crt}
        - {name: CONCOORD_CERT, value: /etc/concoord/client/tls.crt}
        - {name: CONCOORD_KEY, value: /etc/concoord/client/tls.key}
YAML
  if [ -n "${1:-}" ]; then
    cat <<YAML
        - name: CONCOORD_TOKEN
          valueFrom: {secretKeyRef: {name: $1, key: token}}
YAML
  fi
  cat <<YAML
      volumeMounts:
        - {name: client, mountPath: /etc/concoord/client, readOnly: true}
YAML
}

client_volume() {
  cat <<YAML
  volumes:
    - name: client
      secret:
        secretName: $1
YAML
}

# toolbox_pod NAMESPACE IMAGE SECRET TOKEN_SECRET: dig and the concoord client, for queries
# from inside, with the application's client certificate from SECRET and the admin token of
# TOKEN_SECRET (the suite creates objects and types, which is the admin's).
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
$(client_credentials "$4")
$(container_security)
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {memory: 128Mi}
$(client_volume "$3")
YAML
}

# stranger_pod NAMESPACE IMAGE SECRET: a pod that has the group's CA (the one key ca.crt of
# SECRET) but neither the client certificate nor a token: the replicas must refuse it.
stranger_pod() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: stranger
  namespace: $1
  labels:
    app.kubernetes.io/name: concoord-e2e
    app.kubernetes.io/component: stranger
spec:
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
$(pod_security)
  containers:
    - name: stranger
      image: $2
      imagePullPolicy: Never
      command: ["sleep", "infinity"]
      env:
        - {name: CONCOORD_CA, value: /etc/concoord/ca/ca.crt}
      volumeMounts:
        - {name: ca, mountPath: /etc/concoord/ca, readOnly: true}
$(container_security)
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {memory: 128Mi}
  volumes:
    - name: ca
      secret:
        secretName: $3
        items:
          - {key: ca.crt, path: ca.crt}
YAML
}

# writer_pod NAMESPACE NAME IMAGE DOMAIN SECRET: increments the counter through the domain's
# SRV records until told to stop, counting acknowledged and failed calls (e2e-writer), with
# the application's client certificate from SECRET.
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
$(client_credentials)
$(container_security)
      resources:
        requests: {cpu: 50m, memory: 16Mi}
        limits: {memory: 128Mi}
$(client_volume "$5")
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
