"""GPU usage as gpupool reads it: every server (all projects, 2.47+) with its flavor's extra specs,
the GPUs counted from `pci_passthrough:alias`. Real Nova 34 and novasim must answer alike."""

from __future__ import annotations

import pytest

from gpupool import novajson

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    hosts: ["gpu-l40-[001-003]"]
hosts:
  - name: gpu-l40-001
    instances:
      - {name: big, flavor: n3-L40x8, extra_specs: {"pci_passthrough:alias": "l40:8"}}
  - name: gpu-l40-002
    instances:
      - {name: two, flavor: n3-L40x2, extra_specs: {"pci_passthrough:alias": "l40:2"}}
      - {name: one, flavor: n3-L40x1, extra_specs: {"pci_passthrough:alias": "l40:1", "hw:cpu_policy": "dedicated"}}
      - {name: cpu, flavor: cpu.small}
"""


def test_servers_carry_their_flavors_extra_specs_and_gpus_add_up_per_host(cloud, observe):
    d = cloud.deploy(FLEET)
    code, body = d.request("GET", "/servers/detail?all_tenants=1&limit=1000", microversion="2.47")
    assert code == 200, body
    mine = [
        s
        for s in body["servers"]
        if d.logical(s["OS-EXT-SRV-ATTR:host"] or "") in ("gpu-l40-001", "gpu-l40-002")
    ]
    flavors = sorted(
        (s["flavor"]["original_name"], s["flavor"]["extra_specs"], sorted(s["flavor"])) for s in mine
    )
    observe("flavors-2.47", flavors)
    assert [(name, specs) for name, specs, _ in flavors] == [
        ("cpu.small", {}),
        ("n3-L40x1", {"hw:cpu_policy": "dedicated", "pci_passthrough:alias": "l40:1"}),
        ("n3-L40x2", {"pci_passthrough:alias": "l40:2"}),
        ("n3-L40x8", {"pci_passthrough:alias": "l40:8"}),
    ]
    used, _ = novajson.gpus_page({"servers": mine})
    per_host = {d.logical(host): count for host, count in used.items()}
    observe("gpus", per_host)
    assert per_host == {"gpu-l40-001": 8, "gpu-l40-002": 3}
    # Before 2.47 the flavor is a link: GPU usage needs 2.47.
    code, old = d.request("GET", "/servers/detail?all_tenants=1&limit=1000", microversion="2.46")
    assert code == 200 and all("extra_specs" not in s["flavor"] for s in old["servers"])
