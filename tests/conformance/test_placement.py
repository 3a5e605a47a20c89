"""Placement (catalog type `placement`, reached through openstacksdk's conn.placement): the
compute nodes' resource providers, their inventories, allocations and usages, version
negotiation and error bodies. Real side: Placement 16 fed by register.py as nova-compute (the
provider and its inventory), the scheduler (instance allocations) and Nova's aggregate API (the
provider's aggregates) would feed it."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.conformance

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-003]"]
  - name: L40-n3-spot
    hosts: [gpu-l40-003]
hosts:
  - name: gpu-l40-001
    instances: 2
  - name: gpu-l40-003
    status: disabled
    disabled_reason: RMA
"""
HOSTS = ["gpu-l40-001", "gpu-l40-002", "gpu-l40-003"]
FLAVOR = {"VCPU": 16, "MEMORY_MB": 131072, "DISK_GB": 100}  # both clouds' instance size
MISSING = "8a5f0a47-3c8e-4a2d-9d3b-0f6f1c2f0b11"


def test_providers_are_the_hypervisors(cloud, observe):
    """One root provider per compute node, uuid = hypervisor id, name = host."""
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(HOSTS)
    found = {}
    for host in HOSTS:
        code, body, headers = d.placement("GET", f"/resource_providers?name={d.host(host)}", "1.39")
        assert code == 200, body
        (listed,) = body["resource_providers"]
        code, shown, _ = d.placement("GET", f"/resource_providers/{ids[host]}", "1.39")
        assert code == 200, shown
        assert shown == listed
        assert shown["uuid"] == ids[host]
        assert shown["name"] == d.host(host)
        assert shown["parent_provider_uuid"] is None and shown["root_provider_uuid"] == ids[host]
        assert [link["rel"] for link in shown["links"]] == [
            "self",
            "inventories",
            "usages",
            "aggregates",
            "traits",
            "allocations",
        ]
        assert shown["links"][0]["href"].endswith(f"/resource_providers/{ids[host]}")
        code, aggs, _ = d.placement("GET", f"/resource_providers/{ids[host]}/aggregates", "1.39")
        assert code == 200, aggs
        by_uuid = {a.uuid: d.logical(a.name) for a in d.conn.compute.aggregates()}
        found[host] = {
            "generation": shown["generation"],
            "aggregates": sorted(by_uuid.get(a, a) for a in aggs["aggregates"]),
            "aggregates_generation": aggs["resource_provider_generation"],
            "headers": (headers.get("OpenStack-API-Version"), headers.get("Vary")),
        }
    observe("providers", found)
    # generation: 1 for the inventory, +1 per aggregate the host joined, +1 per instance claimed
    headers = ("placement 1.39", "openstack-api-version")
    assert found == {
        "gpu-l40-001": {
            "generation": 4,
            "aggregates": ["L40-n3"],
            "aggregates_generation": 4,
            "headers": headers,
        },
        "gpu-l40-002": {
            "generation": 2,
            "aggregates": ["L40-n3"],
            "aggregates_generation": 2,
            "headers": headers,
        },
        "gpu-l40-003": {
            "generation": 3,
            "aggregates": ["L40-n3", "L40-n3-spot"],
            "aggregates_generation": 3,
            "headers": headers,
        },
    }
    # 1.0: no tree fields, fewer links
    code, old, _ = d.placement("GET", f"/resource_providers/{ids['gpu-l40-002']}", "1.0")
    assert code == 200
    assert sorted(old) == ["generation", "links", "name", "uuid"]
    assert [link["rel"] for link in old["links"]] == ["self", "inventories", "usages"]


def test_allocations_and_usages(cloud, observe):
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(HOSTS)
    instances = d.servers_on("gpu-l40-001")
    seen = {}
    for host in HOSTS:
        code, allocs, _ = d.placement("GET", f"/resource_providers/{ids[host]}/allocations", "1.39")
        assert code == 200, allocs
        code, usages, _ = d.placement("GET", f"/resource_providers/{ids[host]}/usages", "1.39")
        assert code == 200, usages
        code, inventories, _ = d.placement("GET", f"/resource_providers/{ids[host]}/inventories", "1.39")
        assert code == 200, inventories
        seen[host] = {
            "consumers": len(allocs["allocations"]),
            "resources": sorted({str(a["resources"]) for a in allocs["allocations"].values()}),
            "consumer_generations": sorted(
                {a["consumer_generation"] for a in allocs["allocations"].values()}
            ),
            "generation": allocs["resource_provider_generation"],
            "usages": usages,
            "inventories": inventories,
        }
        if host == "gpu-l40-001":
            # every instance on the host holds an allocation, consumer = the instance
            assert sorted(allocs["allocations"]) == sorted(instances)
    observe("allocations", seen)
    inventory = {
        "VCPU": {
            "total": 128,
            "reserved": 0,
            "min_unit": 1,
            "max_unit": 128,
            "step_size": 1,
            "allocation_ratio": 1.0,
        },
        "MEMORY_MB": {
            "total": 1048576,
            "reserved": 512,
            "min_unit": 1,
            "max_unit": 1048576,
            "step_size": 1,
            "allocation_ratio": 1.0,
        },
        "DISK_GB": {
            "total": 7000,
            "reserved": 0,
            "min_unit": 1,
            "max_unit": 7000,
            "step_size": 1,
            "allocation_ratio": 1.0,
        },
    }
    assert seen["gpu-l40-001"] == {
        "consumers": 2,
        "resources": [str(FLAVOR)],
        "consumer_generations": [1],
        "generation": 4,
        "usages": {
            "resource_provider_generation": 4,
            "usages": {"VCPU": 32, "MEMORY_MB": 262144, "DISK_GB": 200},
        },
        "inventories": {"resource_provider_generation": 4, "inventories": inventory},
    }
    assert seen["gpu-l40-002"] == {
        "consumers": 0,
        "resources": [],
        "consumer_generations": [],
        "generation": 2,
        "usages": {"resource_provider_generation": 2, "usages": {"VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}},
        "inventories": {"resource_provider_generation": 2, "inventories": inventory},
    }
    # before 1.28 no consumer generations
    code, old, _ = d.placement("GET", f"/resource_providers/{ids['gpu-l40-001']}/allocations", "1.27")
    assert code == 200
    assert all(set(a) == {"resources"} for a in old["allocations"].values())
    # the consumer's side: GET /allocations/{instance}
    shapes = {}
    for version in ("1.0", "1.12", "1.28", "1.38"):
        code, body, _ = d.placement("GET", f"/allocations/{instances[0]}", version)
        assert code == 200, body
        assert body["allocations"] == {ids["gpu-l40-001"]: {"resources": FLAVOR, "generation": 4}}
        shapes[version] = {k: v for k, v in body.items() if k in ("consumer_generation", "consumer_type")}
        shapes[version]["keys"] = sorted(body)
    code, server = d.request("GET", f"/servers/{instances[0]}")
    assert body["project_id"] == server["server"]["tenant_id"]
    code, unknown, _ = d.placement("GET", f"/allocations/{MISSING}", "1.38")
    shapes["unknown consumer"] = unknown
    observe("consumer", shapes)
    assert shapes == {
        "1.0": {"keys": ["allocations"]},
        "1.12": {"keys": ["allocations", "project_id", "user_id"]},
        "1.28": {
            "consumer_generation": 1,
            "keys": ["allocations", "consumer_generation", "project_id", "user_id"],
        },
        "1.38": {
            "consumer_generation": 1,
            "consumer_type": "unknown",  # Nova's claims name no consumer type
            "keys": ["allocations", "consumer_generation", "consumer_type", "project_id", "user_id"],
        },
        "unknown consumer": {"allocations": {}},
    }


def _error(response) -> dict:
    code, body, headers = response
    assert isinstance(body, dict) and len(body["errors"]) == 1, body
    (error,) = body["errors"]
    assert error.pop("request_id").startswith("req-")
    return {"status": code, "version": headers.get("OpenStack-API-Version"), **error}


def test_placement_errors(cloud, observe):
    d = cloud.deploy(FLEET)
    not_found = "The resource could not be found.\n\n "
    errors = {
        "provider": _error(d.placement("GET", f"/resource_providers/{MISSING}", "1.39")),
        "allocations": _error(d.placement("GET", f"/resource_providers/{MISSING}/allocations", "1.39")),
        "usages": _error(d.placement("GET", f"/resource_providers/{MISSING}/usages", "1.39")),
        "inventories": _error(d.placement("GET", f"/resource_providers/{MISSING}/inventories", "1.39")),
        "provider-1.22": _error(d.placement("GET", f"/resource_providers/{MISSING}", "1.22")),
        "no-route": _error(d.placement("GET", "/no-such-thing", "1.39")),
    }
    observe("errors", errors)
    gone = f"No resource provider with uuid {MISSING} found"
    coded = {
        "title": "Not Found",
        "code": "placement.undefined_code",
        "status": 404,
        "version": "placement 1.39",
    }
    assert errors == {
        "provider": {**coded, "detail": f"{not_found}{gone}  "},
        "allocations": {**coded, "detail": f"{not_found}Resource provider '{MISSING}' not found: {gone}  "},
        "usages": {**coded, "detail": f"{not_found}{gone}: {gone}  "},
        "inventories": {**coded, "detail": f"{not_found}{gone} : {gone}  "},
        # error codes only from 1.23
        "provider-1.22": {
            "status": 404,
            "title": "Not Found",
            "version": "placement 1.22",
            "detail": f"{not_found}{gone}  ",
        },
        "no-route": {**coded, "detail": f"{not_found}  "},
    }


def test_placement_versions_and_auth(cloud, observe):
    d = cloud.deploy(FLEET)
    endpoint = d.conn.placement.get_endpoint().rstrip("/")
    token = d.conn.auth_token

    def get(path: str, version: str | None, with_token: bool = True):
        headers = {"Accept": "application/json"}
        if version:
            headers["OpenStack-API-Version"] = f"placement {version}"
        if with_token:
            headers["X-Auth-Token"] = token
        resp = requests.get(endpoint + path, headers=headers, timeout=30)
        return resp.status_code, resp.json(), resp.headers

    code, root, headers = get("/", None, with_token=False)  # version discovery needs no token
    assert code == 200
    observe("root", root)
    assert root == {
        "versions": [
            {
                "id": "v1.0",
                "max_version": "1.39",
                "min_version": "1.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": ""}],
            }
        ]
    }
    negotiated = {}
    for asked in (None, "1.14", "latest", "1.01"):
        code, _, headers = get("/resource_providers", asked)
        negotiated[str(asked)] = (code, headers.get("OpenStack-API-Version"))
    observe("negotiated", negotiated)
    assert negotiated == {
        "None": (200, "placement 1.0"),
        "1.14": (200, "placement 1.14"),
        "latest": (200, "placement 1.39"),
        "1.01": (200, "placement 1.1"),
    }
    refused = {}
    for asked in ("1.40", "2.0", "1.a"):
        code, body, headers = get("/resource_providers", asked)
        (error,) = body["errors"]
        error.pop("request_id")
        refused[asked] = {"status": code, "header": headers.get("OpenStack-API-Version"), **error}
    observe("refused", refused)
    unacceptable = (
        "The resource could not be generated that was acceptable to your browser (content of type "
        "application/json. \n\n Invalid microversion: Unacceptable version header: "
    )
    assert refused == {
        "1.40": {
            "status": 406,
            "header": None,
            "title": "Not Acceptable",
            "detail": unacceptable + "1.40",
            "max_version": "1.39",
            "min_version": "1.0",
        },
        "2.0": {
            "status": 406,
            "header": None,
            "title": "Not Acceptable",
            "detail": unacceptable + "2.0",
            "max_version": "1.39",
            "min_version": "1.0",
        },
        "1.a": {
            "status": 400,
            "header": None,
            "title": "Bad Request",
            "detail": "The server could not comply with the request since it is either malformed or otherwise "
            "incorrect.\n\n Invalid microversion: invalid version string: 1.a; invalid literal for int() with "
            "base 10: 'a'  ",
        },
    }
    code, body, headers = get("/resource_providers", "1.39", with_token=False)
    observe("no-token", (code, body))
    assert code == 401
    assert body == {
        "error": {
            "code": 401,
            "title": "Unauthorized",
            "message": "The request you have made requires authentication.",
        }
    }
    assert headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_provider_list_filters(cloud, observe):
    d = cloud.deploy(FLEET)
    ids = d.hypervisor_ids(HOSTS)
    by_id = {v: k for k, v in ids.items()}
    aggs = {
        d.logical(a.name): a.uuid
        for a in d.conn.compute.aggregates()
        if d.logical(a.name) in ("L40-n3", "L40-n3-spot")
    }

    def names(query: str, version: str = "1.39"):
        code, body, _ = d.placement("GET", f"/resource_providers?{query}", version)
        if code != 200:
            (error,) = body["errors"]
            return code, error["detail"].split("\n\n ", 1)[1]
        return code, sorted(by_id[p["uuid"]] for p in body["resource_providers"] if p["uuid"] in by_id)

    found = {
        "uuid": names(f"uuid={ids['gpu-l40-002']}"),
        "in_tree": names(f"in_tree={ids['gpu-l40-002']}"),
        "member_of": names(f"member_of={aggs['L40-n3-spot']}"),
        "member_of in:": names(f"member_of=in:{aggs['L40-n3-spot']},{aggs['L40-n3']}"),
        "member_of twice (and)": names(f"member_of={aggs['L40-n3']}&member_of={aggs['L40-n3-spot']}"),
        "member_of forbidden": names(f"member_of={aggs['L40-n3']}&member_of=!{aggs['L40-n3-spot']}"),
        "resources fit 100 VCPU": names("resources=VCPU:100,MEMORY_MB:1024"),
        "member_of twice at 1.23": names(
            f"member_of={aggs['L40-n3']}&member_of={aggs['L40-n3-spot']}", "1.23"
        ),
        "member_of forbidden at 1.31": names(f"member_of=!{aggs['L40-n3-spot']}", "1.31"),
        "member_of not a uuid": names("member_of=abc"),
        "resources badly formed": names("resources=VCPU"),
        "resources unknown class": names("resources=FOO:1"),
    }
    observe("filters", found)
    assert found == {
        "uuid": (200, ["gpu-l40-002"]),
        "in_tree": (200, ["gpu-l40-002"]),
        "member_of": (200, ["gpu-l40-003"]),
        "member_of in:": (200, HOSTS),
        "member_of twice (and)": (200, ["gpu-l40-003"]),
        "member_of forbidden": (200, ["gpu-l40-001", "gpu-l40-002"]),
        "resources fit 100 VCPU": (200, ["gpu-l40-002", "gpu-l40-003"]),  # 001 has 32 of 128 used
        "member_of twice at 1.23": (400, "Multiple member_of parameters are not supported  "),
        "member_of forbidden at 1.31": (
            400,
            "Forbidden member_of parameters are not supported in the specified microversion  ",
        ),
        "member_of not a uuid": (
            400,
            "Invalid query string parameters: Expected 'member_of' parameter to contain valid UUID(s). Got: abc  ",
        ),
        "resources badly formed": (
            400,
            "Badly formed resources parameter. Expected resources query string parameter in form: "
            "?resources=VCPU:2,MEMORY_MB:1024. Got: VCPU.  ",
        ),
        "resources unknown class": (
            400,
            "Invalid resource class in resources parameter: No such resource class FOO.  ",
        ),
    }
    # the query schema of 1.39: unknown keys and malformed uuids
    code, text = names("foo=1")
    assert code == 400 and text.startswith(
        "Invalid query string parameters: Additional properties are not allowed ('foo' was unexpected)"
    )
    code, text = names("uuid=bad")
    assert code == 400 and text.startswith("Invalid query string parameters: 'bad' is not a 'uuid'")
    observe("schema-texts", [names("foo=1", "1.2"), names("in_tree=zz")])
