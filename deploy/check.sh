#!/usr/bin/env bash
# Validates everything in deploy/ that a cluster would reject or misread:
#   1. renders the Helm chart (Helm's own engine, strict lint, values.schema.json) with default
#      and non-default values (deploy/helm/ci/*.yaml);
#   2. checks the default render is the plain manifests in deploy/manifests;
#   3. validates every plain manifest and every render against the Kubernetes JSON schemas
#      (strict: unknown fields fail) of the current and previous minor release;
#   4. checks the Containerfile (parses, pinned bases, non-root runtime stage) and the Grafana
#      dashboard (well-formed, queries only the metrics in deploy/grafana/metrics.txt).
# Renders are left in target/deploy-check/rendered-*/ where tests/deploy_manifests.rs also
# checks them (RBAC, capabilities, flags), so run this before `cargo test`.
# Needs python3 (venv) and PyPI; installs its tools into target/deploy-venv once.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
K8S_VERSIONS=${K8S_VERSIONS:-"1.37.0 1.36.0"}
venv=${DEPLOY_VENV:-$root/target/deploy-venv}
out=${DEPLOY_CHECK_DIR:-$root/target/deploy-check}
chart=deploy/helm/xdp-ingress

step() { printf '== %s\n' "$*"; }

if ! cmp -s deploy/requirements.txt "$venv/.requirements.txt" 2>/dev/null; then
  step "installing deploy/requirements.txt into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt
  cp deploy/requirements.txt "$venv/.requirements.txt"
fi
py="$venv/bin/python"

step "rendering $chart"
rm -rf "$out"
"$py" deploy/tools/chart.py render "$chart" "$out/rendered-default"
"$py" deploy/tools/chart.py render "$chart" "$out/rendered-custom" \
  --values deploy/helm/ci/custom-values.yaml --name edge --namespace edge-system
"$py" deploy/tools/chart.py render "$chart" "$out/rendered-minimal" \
  --values deploy/helm/ci/no-metrics-values.yaml --name xdp-ingress --namespace xdp-ingress
"$py" deploy/tools/chart.py render "$chart" "$out/rendered-secret-namespaces" \
  --values deploy/helm/ci/secret-namespaces-values.yaml --name xdp-ingress --namespace xdp-ingress

step "chart defaults vs deploy/manifests"
"$py" deploy/tools/chart.py compare "$out/rendered-default" deploy/manifests

# Self-test: a misspelt field must fail, or the validation below proves nothing.
mkdir -p "$out/selftest"
sed 's/^\(      \)hostNetwork: true/\1hostNetwork: true\n\1hostNetwrk: true/' \
  deploy/manifests/daemonset.yaml >"$out/selftest/bad.yaml"
if "$venv/bin/kubernetes-validate" --quiet --strict "$out/selftest/bad.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted an unknown field: strict validation is not working" >&2
  exit 1
fi

files=()
while IFS= read -r f; do files+=("$f"); done < <(
  find deploy/manifests "$out"/rendered-* -name '*.yaml' ! -name kustomization.yaml | sort)
for v in $K8S_VERSIONS; do
  step "kubernetes-validate --strict -k $v (${#files[@]} files)"
  "$venv/bin/kubernetes-validate" --quiet --strict -k "$v" "${files[@]}"
done

step "kustomization lists every manifest"
for f in deploy/manifests/*.yaml; do
  n=$(basename "$f")
  [ "$n" = kustomization.yaml ] && continue
  grep -qx "  - $n" deploy/manifests/kustomization.yaml || { echo "$n missing from kustomization.yaml" >&2; exit 1; }
done

step "Containerfile"
"$py" deploy/tools/containerfile_check.py deploy/Containerfile

step "grafana dashboard"
"$py" deploy/tools/dashboard_check.py deploy/grafana/xdp-ingress.json

echo "deploy checks passed"
