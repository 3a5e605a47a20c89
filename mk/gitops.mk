# What Flux (kstatus) and Argo CD (manifests/argocd/.../health.lua, run by gopher-lua) make of a
# GpuHostPool: the harness in testbed/gitops-health, built once per machine and go.mod/go.sum into
# $(CACHE_DIR)/gitops-health/<key>/ (GPUPOOL_CACHE overrides); needs Go the first time.
# testbed.gitops_health imports only the standard library, like testbed.localkube.

.PHONY: gitops-health gitops-testdata

# Build (once per machine) or find the cached harness.
gitops-health:
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PYTHON) -m testbed.gitops_health build

# Record manifests/argocd/gpupool.io/GpuHostPool/testdata/ again from a live operator
# (local kube-apiserver, novasim, `gpupool run`).
gitops-testdata: venv kube-binaries gitops-health
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PY) -m tests.gitops.record_testdata

# tests/gitops and tests/e2e/test_gitops_health.py need it: build it before pytest starts,
# outside any per-test timeout.
test: gitops-health
