#!/usr/bin/env bash
# Renders the kustomize base and every overlay under deploy/ with Debian's
# kubectl (`kubectl kustomize`), validates every object against the
# Kubernetes schemas with PyPI's kubernetes-validate (strict: unknown fields
# are errors), and checks the fleet's own rules (deploy/check_manifests.py).
# What CI runs (`make deploy-check`); about 10 s once the tools are cached.
#
# Tools, installed here by this script, never by hand:
#   - kubectl from Debian's kubernetes-client package, unpacked (not
#     installed) into $CACHE; KUBECTL=path to use another one.
#   - kubernetes-validate and its dependencies, pinned in
#     deploy/requirements-validate.txt, in a venv in $CACHE.
# CACHE defaults to ~/.cache/acereason. The rendered manifests go to
# $OUT (default target/deploy).
#
# KUBERNETES_VERSIONS (default "1.27.0 1.37.0"): the schema versions to
# validate against, the oldest and the newest supported.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CACHE:-$HOME/.cache/acereason}"
out="${OUT:-$repo_root/target/deploy}"
versions="${KUBERNETES_VERSIONS:-1.27.0 1.37.0}"
kc_package="kubernetes-client"
kc_version="1.20.5+really1.20.2-1.1+deb12u1"
validate_version="$(sed -n 's/^kubernetes-validate==//p' "$repo_root/deploy/requirements-validate.txt")"

die() {
    echo "deploy/check.sh: error: $*" >&2
    exit 1
}

# Debian's kubectl, unpacked from its .deb.
kubectl_bin() {
    if [[ -n "${KUBECTL:-}" ]]; then
        echo "$KUBECTL"
        return
    fi
    local dir="$cache/$kc_package-$kc_version"
    if [[ ! -x "$dir/usr/bin/kubectl" ]]; then
        command -v apt-get >/dev/null || die "apt-get not found: set KUBECTL to a kubectl"
        mkdir -p "$cache"
        local work
        work="$(mktemp -d "$cache/.kubectl.XXXXXX")"
        chmod 755 "$work"
        # apt-get download writes to the current directory.
        if ! (cd "$work" && apt-get download -q "$kc_package=$kc_version" >&2 ||
            { apt-get update -q >&2 && apt-get download -q "$kc_package=$kc_version" >&2; }); then
            rm -rf "$work"
            die "cannot download Debian's $kc_package $kc_version"
        fi
        dpkg -x "$work"/"$kc_package"_*.deb "$work/x"
        rm -rf "$dir"
        mv "$work/x" "$dir"
        rm -rf "$work"
    fi
    echo "$dir/usr/bin/kubectl"
}

# The pinned kubernetes-validate.
validator() {
    local venv="$cache/kubernetes-validate-$validate_version"
    if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            -r "$repo_root/deploy/requirements-validate.txt" >&2 ||
            { rm -rf "$venv"; die "cannot install kubernetes-validate from PyPI"; }
    fi
    echo "$venv"
}

kubectl="$(kubectl_bin)"
venv="$(validator)"
echo "kubectl: $("$kubectl" version --client --short 2>/dev/null || "$kubectl" version --client | head -n 1)"
echo "kubernetes-validate: $("$venv/bin/kubernetes-validate" --version)"

mkdir -p "$out"
rendered=()
for dir in "$repo_root/deploy/base" "$repo_root"/deploy/overlays/*/; do
    dir="${dir%/}"
    name="${dir#"$repo_root/deploy/"}"
    file="$out/${name//\//-}.yaml"
    "$kubectl" kustomize "$dir" >"$file" || die "kubectl kustomize $name failed"
    echo "rendered $name: $(grep -c '^kind:' "$file") objects -> ${file#"$repo_root/"}"
    rendered+=("$file")
done

for version in $versions; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${rendered[@]}" ||
        die "a manifest does not validate against Kubernetes $version (see above)"
    echo "every object validates against Kubernetes $version (strict)"
done

"$venv/bin/python" "$repo_root/deploy/check_manifests.py" "${rendered[@]}"
