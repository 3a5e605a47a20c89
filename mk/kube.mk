# Local Kubernetes control plane (real etcd + kube-apiserver on 127.0.0.1, real kubectl).
# See docs/local-control-plane.md. Binaries are cached per machine and version in
# $(CACHE_DIR)/kube/<version>/ (GPUPOOL_CACHE overrides); the first build needs Go.

LOCALKUBE := scripts/localkube.py
LOCALKUBE_STATE ?= .cache/localkube

.PHONY: kube-binaries cluster-up cluster-down cluster-env

# Build (once per machine) or find the cached kube-apiserver and kubectl.
kube-binaries:
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PYTHON) $(LOCALKUBE) build

# Start etcd + kube-apiserver in the background; prints the export lines to use.
cluster-up: venv kube-binaries
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PY) $(LOCALKUBE) up --state-dir $(LOCALKUBE_STATE)

cluster-down:
	$(PYTHON) $(LOCALKUBE) down --state-dir $(LOCALKUBE_STATE)

cluster-env:
	$(PYTHON) $(LOCALKUBE) env --state-dir $(LOCALKUBE_STATE)

# The e2e tests need the binaries: build them before pytest starts, outside any
# per-test timeout (the `kube` fixture would build them too, but slowly under a timeout).
test: kube-binaries
