# Local Kubernetes control plane (real etcd + kube-apiserver on 127.0.0.1, real kubectl).
# See docs/local-control-plane.md. Binaries are cached per machine and version in
# $(CACHE_DIR)/kube/<version>/ (GPUPOOL_CACHE overrides); the first build needs Go.
# testbed.localkube imports only the standard library: the system $(PYTHON) runs it before the
# venv exists (from the repo root, where `-m` finds the testbed package).

LOCALKUBE_STATE ?= .cache/localkube

.PHONY: kube-binaries cluster-up cluster-down cluster-env

# Build (once per machine) or find the cached kube-apiserver and kubectl.
kube-binaries:
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PYTHON) -m testbed.localkube build

# Start etcd + kube-apiserver in the background; prints the export lines to use.
cluster-up: venv kube-binaries
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PY) -m testbed.localkube up --state-dir $(LOCALKUBE_STATE)

cluster-down:
	$(PYTHON) -m testbed.localkube down --state-dir $(LOCALKUBE_STATE)

cluster-env:
	$(PYTHON) -m testbed.localkube env --state-dir $(LOCALKUBE_STATE)

# The e2e tests need the binaries: build them before pytest starts, outside any
# per-test timeout (the `kube` fixture would build them too, but slowly under a timeout).
test: kube-binaries
