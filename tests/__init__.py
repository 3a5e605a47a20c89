"""gpupool's tests, by tier: unit (pure logic), sim (novasim), conformance (novasim vs a real Nova),
e2e (a real kube-apiserver). A package so each tier's helpers import by their full name
(`from tests.sim.reconcile_helpers import ...`); the test infrastructure itself is in testbed/."""
