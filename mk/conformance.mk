# Real-Nova conformance tier (tests/conformance, docs/conformance.md).
# The pytest fixtures install and start everything themselves; these targets are for humans.
# The venv with nova, keystone and placement is cached per machine and version in
# $(CACHE_DIR)/realnova-<versions>/ (GPUPOOL_CACHE overrides).

REALNOVA_STATE ?= .cache/realnova

.PHONY: realnova-install realnova-up realnova-down realnova-env realnova-status conformance conformance-env

# Build (once per machine) the cached venv with nova, keystone and placement.
realnova-install conformance-env: venv
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PY) -m testbed.realnova install

# Start Keystone + Placement + nova-api on 127.0.0.1; prints the export lines to use.
realnova-up: realnova-install
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(PY) -m testbed.realnova up --state-dir $(REALNOVA_STATE)

realnova-down:
	$(PY) -m testbed.realnova down --state-dir $(REALNOVA_STATE)

realnova-env:
	$(PY) -m testbed.realnova env --state-dir $(REALNOVA_STATE)

realnova-status:
	$(PY) -m testbed.realnova status --state-dir $(REALNOVA_STATE)

# Only the conformance tier.
conformance: realnova-install
	GPUPOOL_CACHE="$${GPUPOOL_CACHE:-$(CACHE_DIR)}" $(VENV)/bin/pytest tests/conformance

# The conformance fixtures would install the venv too, but slowly under a per-test timeout:
# build it before pytest starts.
test: realnova-install
