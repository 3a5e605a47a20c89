#!/usr/bin/env bash
# End to end on a kind cluster (needs Docker, kind and kubectl; not run by `make test`, which uses
# a local kube-apiserver instead because CI has no Docker engine).
#
# Builds the image, loads it into kind, installs the CRD and manifests, runs novasim as a sidecar
# of the operator (the operator reaches it on 127.0.0.1 inside the pod), applies examples/pools/
# and waits until every GpuHostPool is Ready.
#   scripts/kind-e2e.sh            # KEEP=1 keeps the cluster afterwards
set -euo pipefail

CLUSTER=${CLUSTER:-gpupool-e2e}
IMAGE=${IMAGE:-gpupool-operator:e2e}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=gpupool-system

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

docker build -t "$IMAGE" "$ROOT"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubectl apply -f "$ROOT/crds/"
# kopf's ClusterKopfPeering CRD, unless another kopf operator installed it already (docs/install.md)
kubectl get crd clusterkopfpeerings.kopf.dev >/dev/null 2>&1 || kubectl apply -f "$ROOT/crds/kopf/"
# kubectl wait can fail at once on a CRD whose status is not written yet: retry it for a while.
for _ in $(seq 30); do
  kubectl wait --for=condition=Established crd/gpuhostpools.gpupool.io crd/clusterkopfpeerings.kopf.dev --timeout=60s && break
  sleep 2
done
kubectl apply -k "$ROOT/manifests/"

# novasim writes the clouds.yaml the operator reads: a shared emptyDir instead of the Secret.
# One replica: each pod would otherwise simulate a cloud of its own.
kubectl -n "$NS" patch deployment gpupool-operator --type=json -p "$(cat <<JSON
[
  {"op": "replace", "path": "/spec/replicas", "value": 1},
  {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "$IMAGE"},
  {"op": "replace", "path": "/spec/template/spec/volumes/0", "value": {"name": "clouds", "emptyDir": {}}},
  {"op": "replace", "path": "/spec/template/spec/containers/0/volumeMounts/0/readOnly", "value": false},
  {"op": "add", "path": "/spec/template/spec/containers/-", "value": {
    "name": "novasim", "image": "$IMAGE",
    "args": ["sim", "--fleet", "/opt/gpupool/examples/fleet.yaml", "--port", "8780",
             "--clouds-out", "/etc/openstack/clouds.yaml"],
    "volumeMounts": [{"name": "clouds", "mountPath": "/etc/openstack"}]}}
]
JSON
)"
kubectl -n "$NS" rollout status deployment/gpupool-operator --timeout=180s

# The example specs name cloud "sim": exactly the entry novasim writes.
kubectl apply -f "$ROOT/examples/pools/"
kubectl wait --for=condition=Ready ghp --all --timeout=300s
kubectl get ghp -o wide
kubectl describe ghp l40 | sed -n '/Events:/,$p'
echo "kind-e2e: every GpuHostPool is Ready"
