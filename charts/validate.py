#!/usr/bin/env python3
"""Validates the chart's rendered manifests and ConCoordCluster resources offline.

- Kubernetes objects: against the API's JSON schemas shipped in kubernetes-validate, in
  strict mode (unknown fields are errors), for each Kubernetes version asked for.
- Chart policy: non-root, read-only, capability-free containers; no wildcard RBAC; leader
  election whenever the operator runs more than one pod.
- ConCoordClusters: against the openAPIV3Schema of the generated CRD, with unknown fields
  refused (as kubectl's strict field validation does) and the CRD's CEL rules evaluated.
- Files given with --must-fail: each must be refused, so the checks above cannot pass by
  checking nothing.

Prints one line per object and exits 1 when anything is wrong.
"""

import argparse
import copy
import sys

import celpy
import jsonschema
import kubernetes_validate
import yaml

# Kinds the chart may render that kubernetes-validate has no schema for.
THIRD_PARTY_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


class Report:
    """Counts results and prints one line each; a quiet one only keeps the failures."""

    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.quiet = quiet
        self.reasons = []

    def ok(self, what, detail=""):
        self.passed += 1
        if not self.quiet:
            print(f"ok    {what}{' (' + detail + ')' if detail else ''}")

    def fail(self, what, why):
        self.failed += 1
        self.reasons.append(why)
        if not self.quiet:
            print(f"FAIL  {what}: {why}")

    def note(self, what, why):
        if not self.quiet:
            print(f"note  {what}: {why}")


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def describe(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


# ---------------------------------------------------------------- Kubernetes objects


def validate_kubernetes(doc, where, versions, report):
    what = f"{where}: {describe(doc)}"
    if (doc.get("apiVersion"), doc.get("kind")) in THIRD_PARTY_KINDS:
        report.note(what, f"{doc['apiVersion']} has no schema available offline; not validated")
        return
    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            errors.append(f"k8s {version}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"k8s {version}: {e.message}")
    if doc.get("kind") not in CLUSTER_SCOPED_KINDS and not (doc.get("metadata") or {}).get("namespace"):
        errors.append("namespaced object without metadata.namespace")
    if errors:
        report.fail(what, "; ".join(errors))
    else:
        report.ok(what, "k8s " + ", ".join(versions))


# ---------------------------------------------------------------- chart policy


def pod_spec(doc):
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def container_policy_errors(spec):
    errors = []
    pod_ctx = spec.get("securityContext") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        ctx = c.get("securityContext") or {}
        name = c.get("name", "?")
        if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
            errors.append(f"container {name}: runAsNonRoot is not set")
        if ctx.get("readOnlyRootFilesystem") is not True:
            errors.append(f"container {name}: root file system is writable")
        if ctx.get("allowPrivilegeEscalation") is not False:
            errors.append(f"container {name}: privilege escalation is allowed")
        if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
            errors.append(f"container {name}: capabilities are not all dropped")
        if ctx.get("privileged"):
            errors.append(f"container {name}: privileged")
    return errors


def rbac_policy_errors(doc):
    errors = []
    for i, rule in enumerate(doc.get("rules") or []):
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in (rule.get(field) or []):
                errors.append(f"rule {i}: wildcard in {field}")
        verbs = set(rule.get("verbs") or [])
        if verbs & {"escalate", "bind", "impersonate"}:
            errors.append(f"rule {i}: grants {sorted(verbs & {'escalate', 'bind', 'impersonate'})}")
        # The operator reads Secrets by name and writes its own (CA, certificates, tokens);
        # list or watch would read every Secret of the namespace.
        if "secrets" in (rule.get("resources") or []) and verbs - {"get", "create", "update", "patch"}:
            errors.append(
                f"rule {i}: secrets need only get, create, update and patch, grants {sorted(verbs)}"
            )
    return errors


def check_policy(docs, where, report):
    """Rules every rendering of the chart must keep, whatever the values."""
    lease_roles = [
        d
        for d in docs
        if d.get("kind") == "Role"
        and any("leases" in (r.get("resources") or []) for r in d.get("rules") or [])
    ]
    for doc in docs:
        what = f"{where}: policy {describe(doc)}"
        errors = []
        spec = pod_spec(doc)
        if spec is not None:
            errors += container_policy_errors(spec)
        if doc.get("kind") in ("Role", "ClusterRole"):
            errors += rbac_policy_errors(doc)
        if doc.get("kind") == "Deployment":
            replicas = (doc.get("spec") or {}).get("replicas", 1)
            args = [a for c in spec.get("containers") or [] for a in c.get("args") or []]
            elects = "--leader-elect" in args
            if replicas > 1 and not elects:
                errors.append(f"{replicas} operator pods without --leader-elect")
            if elects and not lease_roles:
                errors.append("--leader-elect without a Role granting leases")
            if not elects and (doc["spec"].get("strategy") or {}).get("type") != "Recreate":
                errors.append("without leader election the rollout must be Recreate")
        if spec is None and doc.get("kind") not in ("Role", "ClusterRole", "Deployment"):
            continue
        if errors:
            report.fail(what, "; ".join(errors))
        else:
            report.ok(what)


# ---------------------------------------------------------------- custom resources


def openapi_to_jsonschema(node):
    """The CRD's structural schema as a JSON schema that refuses unknown fields."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: openapi_to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = openapi_to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [openapi_to_jsonschema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def cel_rules(schema, value, path):
    """(path, rule, value) for every x-kubernetes-validations rule that applies to value."""
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule, value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, child in value.items():
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                yield from cel_rules(sub, child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            yield from cel_rules(schema["items"], child, f"{path}[{i}]")


def apply_defaults(schema, value):
    """Fills in the schema's defaults as the API server does before it runs CEL rules."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, child in value.items():
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                apply_defaults(sub, child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for child in value:
            apply_defaults(schema["items"], child)
    return value


def cel_errors(schema, doc):
    """Evaluates the CRD's CEL rules as the API server would on create, and each transition
    rule (oldSelf) on an unchanged update, which must always be allowed."""
    env = celpy.Environment()
    errors = []
    for path, rule, value in cel_rules(schema, doc, ""):
        expr = rule["rule"]
        activation = {"self": celpy.json_to_cel(value)}
        if "oldSelf" in expr:
            activation["oldSelf"] = celpy.json_to_cel(copy.deepcopy(value))
        try:
            result = env.program(env.compile(expr)).evaluate(activation)
        except Exception as e:  # a rule the evaluator cannot run is a finding too
            errors.append(f"{path or '.'}: CEL rule {expr!r} could not be evaluated: {e}")
            continue
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path or '.'}: {rule.get('message') or 'failed rule ' + repr(expr)}")
    return errors


def custom_resource_errors(crd, doc):
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    api_version = doc.get("apiVersion", "")
    if doc.get("kind") != kind or not api_version.startswith(group + "/"):
        return [f"not a {kind} of {group} (apiVersion {api_version!r}, kind {doc.get('kind')!r})"]
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    version = api_version.split("/", 1)[1]
    if version not in served:
        return [f"version {version} is not served by the CRD (served: {sorted(served)})"]
    openapi = served[version]["schema"]["openAPIV3Schema"]
    schema = openapi_to_jsonschema(openapi)
    # The API server checks metadata itself; the CRD schema says nothing about it.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    validator = jsonschema.Draft4Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]
    if not errors:
        body = {k: v for k, v in doc.items() if k not in ("metadata", "apiVersion", "kind")}
        errors += cel_errors(openapi, apply_defaults(openapi, copy.deepcopy(body)))
    name = ((doc.get("metadata") or {}).get("name")) or ""
    if not name:
        errors.append("metadata.name is missing")
    return errors


def validate_custom_resources(crd, path, report, must_fail):
    kind = crd["spec"]["names"]["kind"]
    docs = [d for d in load_documents(path) if d.get("kind") == kind]
    if not docs:
        report.fail(path, f"holds no {kind}")
    for doc in docs:
        what = f"{path}: {describe(doc)}"
        errors = custom_resource_errors(crd, doc)
        if must_fail:
            if errors:
                report.ok(what, "refused as it must be: " + errors[0])
            else:
                report.fail(what, "was accepted, but this fixture is invalid")
        elif errors:
            report.fail(what, "; ".join(errors))
        else:
            report.ok(what, f"against {crd['metadata']['name']}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kube-versions", default="1.28,1.35",
                   help="comma-separated Kubernetes versions whose schemas to check against")
    p.add_argument("--manifests", nargs="*", default=[],
                   help="rendered manifests: schema-validated")
    p.add_argument("--chart-manifests", nargs="*", default=[],
                   help="rendered chart manifests: schema-validated and policy-checked")
    p.add_argument("--crd", help="generated CRD file (for --custom-resources and --must-fail)")
    p.add_argument("--custom-resources", nargs="*", default=[])
    p.add_argument("--must-fail", nargs="*", default=[],
                   help="invalid custom resources that must be refused")
    p.add_argument("--must-fail-manifests", nargs="*", default=[],
                   help="invalid manifests: each object must fail the schema or policy checks")
    args = p.parse_args()
    versions = [v.strip() for v in args.kube_versions.split(",") if v.strip()]
    report = Report()

    for path in args.manifests + args.chart_manifests:
        docs = load_documents(path)
        if not docs:
            report.fail(path, "no objects")
        for doc in docs:
            validate_kubernetes(doc, path, versions, report)
        if path in args.chart_manifests:
            check_policy(docs, path, report)

    for path in args.must_fail_manifests:
        for doc in load_documents(path):
            probe = Report(quiet=True)
            validate_kubernetes(doc, path, versions, probe)
            check_policy([doc], path, probe)
            if probe.failed:
                report.ok(f"{path}: {describe(doc)}", "refused as it must be: " + probe.reasons[0])
            else:
                report.fail(f"{path}: {describe(doc)}", "was accepted, but this fixture is invalid")

    if args.custom_resources or args.must_fail:
        if not args.crd:
            raise SystemExit("--crd is required to validate custom resources")
        crds = [d for d in load_documents(args.crd) if d.get("kind") == "CustomResourceDefinition"]
        if len(crds) != 1:
            raise SystemExit(f"{args.crd}: expected one CustomResourceDefinition, found {len(crds)}")
        validate_kubernetes(crds[0], args.crd, versions, report)
        for path in args.custom_resources:
            validate_custom_resources(crds[0], path, report, must_fail=False)
        for path in args.must_fail:
            validate_custom_resources(crds[0], path, report, must_fail=True)

    print(f"validate: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
