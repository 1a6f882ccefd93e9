#!/usr/bin/env bash
# `make deploy-check`: what can be checked of deploy/ without a container engine or a Kubernetes
# cluster (docs/deploy.md, "What was run here"):
#   1. the Kustomize set builds (kubectl kustomize);
#   2. checkov finds no failed check in it;
#   3. the package installs as deploy/Containerfile installs it (binary wheels only, no compiler,
#      runtime dependencies alone) and every module imports, the CLI runs, the catalog loads.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== kubectl kustomize deploy/kubernetes"
kubectl kustomize deploy/kubernetes > "$work/built.yaml"
grep -c '^kind:' "$work/built.yaml" | xargs echo "resources:"

echo "== checkov (its own virtualenv, $work/checkov)"
python3 -m venv "$work/checkov"
"$work/checkov/bin/pip" install --quiet checkov
# Offline, checkov cannot fetch severities from its vendor's API: it says so on stderr and still checks.
"$work/checkov/bin/checkov" -f "$work/built.yaml" --framework kubernetes --compact --quiet 2>/dev/null

echo "== the image's install: pip install --only-binary=:all: --no-binary=samband ."
python3 -m venv "$work/image"
git ls-files -z pyproject.toml README.md LICENSE agents bus connectors deploy schemas synthetic \
	| tar --null -cf - -T - | (mkdir "$work/src" && tar -xf - -C "$work/src")
(cd "$work/src" && "$work/image/bin/pip" install --quiet --only-binary=:all: --no-binary=samband .)
(cd "$work" && "$work/image/bin/python" - <<'PY'
import importlib, pkgutil
failed = {}
for top in ("agents", "bus", "connectors", "schemas", "synthetic", "deploy"):
    for module in pkgutil.walk_packages(importlib.import_module(top).__path__, top + "."):
        if not module.name.startswith("connectors.testing"):  # the pytest plugin: a test dependency
            try:
                importlib.import_module(module.name)
            except Exception as exc:
                failed[module.name] = repr(exc)
assert not failed, failed
print("every module imports with the runtime dependencies alone")
PY
)
(cd "$work" && SAMBAND_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1 "$work/image/bin/samband" topics --table > /dev/null)
(cd "$work" && "$work/image/bin/samband" schemas list > /dev/null)
echo "samband topics --table and samband schemas list run from the installed package"
