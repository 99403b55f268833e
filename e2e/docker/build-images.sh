#!/usr/bin/env bash
# Builds the container images without pulling anything: compiles the static binaries on
# this host (cargo profile `dist`, +crt-static for <arch>-unknown-linux-gnu), stages them
# with the host's CA bundle in a small build context, and builds the Dockerfile's
# `replica-prebuilt` / `operator-prebuilt` targets.
#
#   e2e/docker/build-images.sh            # replica, and the operator when its crate exists
#   e2e/docker/build-images.sh replica    # only the replica image
#
# Tags: concoord/replica:<version> and :dev, concoord/operator:<version> and :dev
# (version: the workspace's). Prints each image's size.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/concoord-target}"
case "$(uname -m)" in
  x86_64 | aarch64) triple="$(uname -m)-unknown-linux-gnu" ;;
  *)
    echo "build-images.sh: no static glibc target for $(uname -m) (x86_64 and aarch64 are supported)" >&2
    exit 1
    ;;
esac
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

die() { echo "build-images: $*" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || die "missing: docker (Debian package docker.io)"
command -v cargo >/dev/null 2>&1 || die "missing: cargo (the Rust toolchain: https://rustup.rs)"
command -v readelf >/dev/null 2>&1 || die "missing: readelf (Debian package binutils)"
[ -r "$ca_bundle" ] || die "missing: $ca_bundle (Debian package ca-certificates; or set CA_BUNDLE)"
docker info >/dev/null 2>&1 || die "the docker daemon does not answer (is it running, may you use it?)"

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
[ -n "$version" ] || die "no version in the [workspace.package] of Cargo.toml"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
source_url="$(git remote get-url origin 2>/dev/null || true)"
# The commit time, not now: rebuilding the same commit gives the same image.
created="$(git log -1 --format=%cI 2>/dev/null || echo unknown)"

# Which images: the arguments, or the replica plus the operator when its crate exists.
images=("$@")
if [ ${#images[@]} -eq 0 ]; then
  images=(replica)
  if [ -f operator/Cargo.toml ]; then images+=(operator); fi
fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/concoord-image.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
cp Dockerfile "$stage/Dockerfile"
cp "$ca_bundle" "$stage/ca-certificates.crt"
echo 'nonroot:x:65532:65532:nonroot:/data:/sbin/nologin' >"$stage/passwd"
echo 'nonroot:x:65532:' >"$stage/group"
mkdir "$stage/data"

# binary_for IMAGE -> package and binary name
binary_for() {
  case "$1" in
    replica) echo concoord ;;
    operator) echo concoord-operator ;;
    *) die "unknown image '$1' (replica or operator)" ;;
  esac
}

for image in "${images[@]}"; do
  bin="$(binary_for "$image")"
  echo "== $bin: cargo build --profile dist --target $triple (static)"
  # --target keeps RUSTFLAGS off build scripts and proc macros (they stay dynamic).
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --profile dist --target "$triple" -p "$bin" --bin "$bin"
  built="$CARGO_TARGET_DIR/$triple/dist/$bin"
  [ -x "$built" ] || die "cargo did not produce $built"
  if readelf -l "$built" | grep -q 'program interpreter'; then
    die "$built is dynamically linked (expected a static binary)"
  fi
  # install, not cp: cp onto the placeholder an earlier image left (below) would keep the
  # placeholder's mode, 0644, and the image's entrypoint could not be executed.
  install -m 0755 "$built" "$stage/$bin"
  # The classic builder also runs the stages before the target, so every COPY source must
  # exist; a placeholder for the binary not built here ends up in no image.
  for other in concoord concoord-operator; do [ -e "$stage/$other" ] || : >"$stage/$other"; done

  echo "== concoord/$image:$version (docker build --target $image-prebuilt)"
  docker build --quiet --target "$image-prebuilt" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    --build-arg CREATED="$created" --build-arg SOURCE="$source_url" \
    -t "concoord/$image:$version" -t "concoord/$image:dev" "$stage" >/dev/null
  # The image must run its binary (no shell needed: the entrypoint is the binary).
  ran="$(docker run --rm "concoord/$image:$version" --version 2>&1)" ||
    die "concoord/$image:$version does not run its binary: $ran"
  size="$(docker image inspect --format '{{.Size}}' "concoord/$image:$version")"
  echo "concoord/$image:$version concoord/$image:dev $((size / 1024 / 1024)) MiB ($size bytes)"
done
