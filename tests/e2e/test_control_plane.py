"""The local control plane is a real Kubernetes API: real kube-apiserver + etcd, real kubectl."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e

GROUP = "widgets.e2e.gpupool.test"

CRD = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
    additionalPrinterColumns:
    - name: Min
      type: integer
      jsonPath: .spec.minReplicas
    - name: Max
      type: integer
      jsonPath: .spec.maxReplicas
    - name: Phase
      type: string
      jsonPath: .status.phase
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas]
            properties:
              minReplicas: {{type: integer, minimum: 0}}
              maxReplicas: {{type: integer, minimum: 0}}
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
          status:
            type: object
            properties:
              phase: {{type: string}}
"""


def widget(name: str, lo: int, hi: int, extra: str = "") -> str:
    return f"""
apiVersion: {GROUP}/v1
kind: Widget
metadata:
  name: {name}
  namespace: widgets
spec:
  minReplicas: {lo}
  maxReplicas: {hi}
{extra}"""


@pytest.fixture(scope="module")
def widgets(kube):
    kube.apply(CRD)
    kube.wait_established(f"widgets.{GROUP}")
    kube.kubectl("create", "namespace", "widgets")
    return kube


def test_client_and_server_versions_match(kube):
    v = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert v["clientVersion"]["gitVersion"] == kube.version
    assert v["serverVersion"]["gitVersion"] == kube.version
    major, minor = kube.version.lstrip("v").split(".")[:2]
    assert (v["serverVersion"]["major"], v["serverVersion"]["minor"]) == (major, minor)
    assert "WARNING" not in kube.kubectl("version").stderr  # no client/server skew warning


def test_authenticated_as_cluster_admin(kube):
    me = kube.kubectl_json("auth", "whoami")
    assert "system:masters" in me["status"]["userInfo"]["groups"]
    assert kube.kubectl("auth", "can-i", "*", "*", "--all-namespaces").stdout.strip() == "yes"
    # Default namespaces come from the API server itself.
    names = {ns["metadata"]["name"] for ns in kube.kubectl_json("get", "namespaces")["items"]}
    assert {"default", "kube-system", "kube-public"} <= names


def test_configmap_apply_and_read_back(kube):
    kube.kubectl("create", "namespace", "cm-test")
    kube.apply(
        """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: cm-test
data:
  pool: spot
  size: "3"
"""
    )
    cm = kube.kubectl_json("get", "configmap", "settings", "-n", "cm-test")
    assert cm["data"] == {"pool": "spot", "size": "3"}
    assert cm["metadata"]["uid"] and cm["metadata"]["resourceVersion"]
    # A second apply of a change is a real three-way merge patch.
    kube.apply(
        """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: cm-test}
data: {pool: runpod}
"""
    )
    assert kube.kubectl_json("get", "configmap", "settings", "-n", "cm-test")["data"] == {"pool": "runpod"}


def test_crd_cel_rule_refuses_violating_object(widgets):
    widgets.apply(widget("ok", 1, 3))
    bad = widgets.kubectl("apply", "-f", "-", input=widget("bad", 5, 2), check=False)
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr
    assert "Invalid value" in bad.stderr
    out = widgets.kubectl("get", "widgets", "-n", "widgets", "-o", "name").stdout.split()
    assert out == [f"widget.{GROUP}/ok"]
    # The rule also guards updates of an existing object.
    upd = widgets.kubectl("apply", "-f", "-", input=widget("ok", 9, 3), check=False)
    assert upd.returncode != 0 and "minReplicas must not exceed maxReplicas" in upd.stderr


def test_status_subresource_and_printer_columns(widgets):
    widgets.apply(widget("cols", 2, 4))
    widgets.kubectl(
        "patch",
        "widget",
        "cols",
        "-n",
        "widgets",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}}',
    )
    # Writes to the main resource do not touch status (status subresource enabled).
    widgets.kubectl(
        "patch", "widget", "cols", "-n", "widgets", "--type=merge", "-p", '{"status": {"phase": "X"}}'
    )
    lines = widgets.kubectl("get", "widget", "cols", "-n", "widgets").stdout.splitlines()
    # Declared columns replace the default AGE column; NAME always comes first.
    assert lines[0].split() == ["NAME", "MIN", "MAX", "PHASE"]
    assert lines[1].split() == ["cols", "2", "4", "Ready"]
    wide = widgets.kubectl(
        "get", "widgets", "-n", "widgets", "-o", "custom-columns=N:.metadata.name,P:.status.phase"
    )
    assert "cols   Ready" in wide.stdout


def test_strict_field_validation_refuses_unknown_fields(widgets):
    cm = """
apiVersion: v1
kind: ConfigMap
metadata: {name: strict, namespace: widgets}
data: {a: b}
bogus: 1
"""
    r = widgets.kubectl("apply", "--validate=strict", "-f", "-", input=cm, check=False)
    assert r.returncode != 0 and 'unknown field "bogus"' in r.stderr, r.stderr
    # Server-side apply refuses it too, in its own words.
    r = widgets.kubectl("apply", "--server-side", "--validate=strict", "-f", "-", input=cm, check=False)
    assert r.returncode != 0 and ".bogus: field not declared in schema" in r.stderr, r.stderr
    r = widgets.kubectl("create", "--validate=strict", "-f", "-", input=cm, check=False)
    assert r.returncode != 0 and 'strict decoding error: unknown field "bogus"' in r.stderr, r.stderr

    w = widget("strict", 1, 2, extra="  colour: red\n")
    r = widgets.kubectl("apply", "--validate=strict", "-f", "-", input=w, check=False)
    assert r.returncode != 0 and 'unknown field "spec.colour"' in r.stderr, r.stderr
    # With validation off the server accepts it and prunes the unknown field.
    widgets.kubectl("apply", "--validate=false", "-f", "-", input=w)
    spec = widgets.kubectl_json("get", "widget", "strict", "-n", "widgets")["spec"]
    assert spec == {"minReplicas": 1, "maxReplicas": 2}


def test_python_kubernetes_client_uses_the_kubeconfig(kube):
    # The operator's client stack (kubernetes / kopf) talks to it with the same kubeconfig.
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kube.kubeconfig)))
    names = {ns.metadata.name for ns in api.list_namespace().items}
    assert "kube-system" in names
    ver = client.VersionApi(api.api_client).get_code()
    assert ver.git_version == kube.version
