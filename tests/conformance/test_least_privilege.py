"""gpupool with least privilege, on the real Nova 34 + Placement 16 (real Nova only).

testbed/realnova runs Nova and Placement with the policy overrides of manifests/openstack/ (Nova's
as `[oslo_policy] policy_file`, Placement's as a policy.d drop-in) and creates, in Keystone, a role
`gpupool-operator`, a project `gpupool`, a user `gpupool` holding only that role, its application
credential restricted to the role (clouds.yaml entry `realnova-gpupool`, the one the CLI tests use)
and a user `gpupool-norole` holding only `member` there. docs/openstack-access.md is the table
these tests check, call by call:

- each request gpupool makes is refused (403) without the role, naming exactly the policy rule
  the table gives, and answered with it, including other projects' instances on a host (the
  safety checks must see them);
- `gpupool reconcile` converges with nothing but the application credential, every request it
  makes (read from Nova's and Placement's request logs, by user) is in the table with its
  microversion and none is refused;
- the same credentials are refused what gpupool never needs (servers, migrations, flavors,
  deleting services, other aggregate and Placement calls, Keystone), except forcing a service
  down: Nova checks that against the same rule as disabling one (pinned below);
- the run without the role ends with exit 1, one line naming the refused rule, no traceback, and
  nothing moved.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conformance.backends import Deployed, Fleet, _connect
from tests.conformance.checks import GPUPOOL, aggregate_state, service_state

pytestmark = pytest.mark.conformance
REPO = Path(__file__).resolve().parents[2]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Every request gpupool makes (operator/gpupool/cloud.py; docs/openstack-access.md):
# (service, method, path pattern below the endpoint, microversion, policy rule).
GPUPOOL_CALLS = [
    ("compute", "GET", r"/os-aggregates", "2.41", "os_compute_api:os-aggregates:index"),
    ("compute", "POST", r"/os-aggregates", "2.41", "os_compute_api:os-aggregates:create"),
    ("compute", "DELETE", r"/os-aggregates/\d+", "2.41", "os_compute_api:os-aggregates:delete"),
    # add_host, remove_host, set_metadata: one route, three rules (by the body's action)
    ("compute", "POST", r"/os-aggregates/\d+/action", "2.41", "os_compute_api:os-aggregates:*"),
    (
        "compute",
        "GET",
        r"/os-services\?binary=nova-compute(&host=[^&]+)?",
        "2.53",
        "os_compute_api:os-services:list",
    ),
    ("compute", "PUT", rf"/os-services/{UUID}", "2.53", "os_compute_api:os-services:update"),
    (
        "compute",
        "GET",
        rf"/os-hypervisors/detail(\?(limit=\d+&)?marker={UUID})?",
        "2.87",
        "os_compute_api:os-hypervisors:list-detail",
    ),
    (
        "compute",
        "GET",
        rf"/os-hypervisors/{UUID}\?with_servers=true",
        "2.87",
        "os_compute_api:os-hypervisors:show",
    ),
    (
        "placement",
        "GET",
        rf"/resource_providers/{UUID}/allocations",
        "1.0",
        "placement:resource_providers:allocations:list",
    ),
]

CALLS_FLEET = """
aggregates:
  - name: LP-pool
    hosts: [gpu-lp-001, gpu-lp-002]
  - name: LP-other
    hosts: []
hosts:
  - name: gpu-lp-001
    instances: 1
  - name: gpu-lp-003
"""


# -- connections and requests ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lp(realnova):
    """Connections: `gpupool` (the application credential, role gpupool-operator only),
    `password` (the user gpupool, password auth), `norole` (gpupool-norole: member, not the role)."""
    clouds = realnova.least_privilege["clouds"]
    conns = {
        "gpupool": _connect(realnova.clouds_yaml, clouds["app_credential"]),
        "password": _connect(realnova.clouds_yaml, clouds["password"]),
        "norole": _connect(realnova.clouds_yaml, clouds["norole"]),
    }
    yield conns
    for conn in conns.values():
        conn.close()


@pytest.fixture(scope="module")
def fleet(realnova_backend, realnova) -> Deployed:
    """CALLS_FLEET; its one instance (on gpu-lp-001) is the admin project's, as register() makes
    them; gpu-lp-003 gets one of gpupool's own project (`fleet.own_instance`)."""
    d = realnova_backend.materialize(Fleet.parse(CALLS_FLEET))
    host = d.host("gpu-lp-003")
    registered = realnova.register(
        {"instances": {host: 1}, "project_id": realnova.least_privilege["project_id"]}
    )
    d.own_instance = registered["instances"][host][0]
    yield d
    d.conn.close()


def call(conn, service: str, method: str, path: str, microversion: str | None = None, body=None):
    """One request; (status, json-or-text). Never raises on 4xx/5xx."""
    kwargs = {"microversion": microversion, "raise_exc": False}
    if body is not None:
        kwargs["json"] = body
    resp = getattr(conn, service).request(path, method, **kwargs)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text


def forbidden_rule(service: str, status: int, body) -> str | None:
    """The policy rule a 403 names: Nova `Policy doesn't allow RULE to be performed.`, Placement
    `Policy does not allow RULE to be performed.`, Keystone `... perform the requested action: RULE.`"""
    if status != 403:
        return None
    text = str(body)
    m = re.search(r"Policy (?:doesn't|does not) allow (\S+) to be performed", text)
    if m is None:
        m = re.search(r"requested action: ([\w:]+)", text)
    return m[1] if m else text


def allowed(lp, service, method, path, microversion, body=None, *, rule: str, ok=(200,)):
    """The request is refused without the role, naming `rule`, and answered with it."""
    status, answer = call(lp["norole"], service, method, path, microversion, body)
    assert (status, forbidden_rule(service, status, answer)) == (403, rule), (
        f"without the role, {method} {path}: {status} {answer}"
    )
    status, answer = call(lp["password"], service, method, path, microversion, body)
    assert status in ok, f"with the role, {method} {path}: {status} {answer}"
    return answer


def host_ids(d: Deployed, host: str) -> dict:
    """{"service": service uuid, "hypervisor": compute node uuid, "instances": [uuid]} (as admin)."""
    code, body = d.request(
        "GET", f"/os-services?binary=nova-compute&host={d.host(host)}", microversion="2.53"
    )
    assert code == 200, body
    return {
        "service": body["services"][0]["id"],
        "hypervisor": d.hypervisor_ids([host])[host],
        "instances": d.servers_on(host),
    }


# -- the policy files grant exactly these rules, of all the rules Nova and Placement have ----------

NOVA_RULES = {
    "os_compute_api:os-aggregates:index",
    "os_compute_api:os-aggregates:create",
    "os_compute_api:os-aggregates:delete",
    "os_compute_api:os-aggregates:add_host",
    "os_compute_api:os-aggregates:remove_host",
    "os_compute_api:os-aggregates:set_metadata",
    "os_compute_api:os-services:list",
    "os_compute_api:os-services:update",
    "os_compute_api:os-hypervisors:list-detail",
    "os_compute_api:os-hypervisors:show",
}
PLACEMENT_RULES = {"placement:resource_providers:allocations:list"}

# Every registered Placement rule, checked for project-scoped credentials with the given roles
# (in the real Nova's venv, with the running Placement's own config: its policy.d drop-in).
_PLACEMENT_CHECK = """
import json, sys
from oslo_config import cfg
from oslo_policy import policy
from placement import policies
conf = cfg.ConfigOpts()
enforcer = policy.Enforcer(conf)
conf([], project="placement", default_config_files=[sys.argv[1]])
enforcer.register_defaults(policies.list_rules())
enforcer.load_rules()
creds = {"roles": sys.argv[2:], "project_id": "p0123", "user_id": "u4567"}
target = {"project_id": "p0123", "user_id": "u4567"}
print(json.dumps(sorted(r for r in enforcer.registered_rules if enforcer.enforce(r, target, creds))))
"""


def _nova_allows(realnova, roles: str) -> set[str]:
    """Nova's own `nova-policy policy check`: every Nova rule these roles pass, with the running
    nova-api's config (its policy_file). Project-scoped, target = the caller's own project."""
    cmd = [str(realnova.venv / "bin" / "nova-policy"), "--config-file", str(realnova.state / "nova.conf")]
    cmd += ["--os-roles", roles, "--os-tenant-id", "p0123", "--os-user-id", "u4567", "policy", "check"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=realnova.state)
    assert out.returncode == 0, out.stderr[-2000:]
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


def _placement_allows(realnova, *roles: str) -> set[str]:
    cmd = [
        str(realnova.venv / "bin" / "python"),
        "-c",
        _PLACEMENT_CHECK,
        str(realnova.state / "placement.conf"),
    ]
    out = subprocess.run([*cmd, *roles], capture_output=True, text=True, timeout=120, cwd=realnova.state)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout))


def test_the_role_gains_exactly_gpupool_rules_and_nothing_more(realnova):
    """Of every rule Nova 34 and Placement 16 register, the role adds exactly the ones gpupool's
    calls are checked against (docs/openstack-access.md) to what a project member without any
    role may do. Admin keeps them (each override is "<the default> or role:gpupool-operator"; the
    rest of the tier runs as admin)."""
    for name, default in (("nova", "rule:context_is_admin"), ("placement", "rule:admin_or_service_api")):
        overrides = yaml.safe_load((REPO / "manifests" / "openstack" / f"{name}-policy.yaml").read_text())
        assert set(overrides.values()) == {f"{default} or role:gpupool-operator"}, overrides
        assert set(overrides) == (NOVA_RULES if name == "nova" else PLACEMENT_RULES)
    nova_baseline = _nova_allows(realnova, "")
    assert _nova_allows(realnova, "gpupool-operator") - nova_baseline == NOVA_RULES
    placement_baseline = _placement_allows(realnova)
    assert _placement_allows(realnova, "gpupool-operator") - placement_baseline == PLACEMENT_RULES
    assert PLACEMENT_RULES <= _placement_allows(realnova, "admin")
    # the tables agree: the rules of GPUPOOL_CALLS are these (add_host, remove_host and
    # set_metadata share one route)
    table = {rule for *_, rule in GPUPOOL_CALLS} - {"os_compute_api:os-aggregates:*"}
    assert table | {
        f"os_compute_api:os-aggregates:{a}" for a in ("add_host", "remove_host", "set_metadata")
    } == (NOVA_RULES | PLACEMENT_RULES)


# -- each call gpupool makes: refused without the role, allowed with it ---------------------------


def test_list_aggregates(lp, fleet):
    body = allowed(lp, "compute", "GET", "/os-aggregates", "2.41", rule="os_compute_api:os-aggregates:index")
    listed = {a["name"]: sorted(a["hosts"]) for a in body["aggregates"]}
    assert listed[fleet.name("LP-pool")] == [fleet.host("gpu-lp-001"), fleet.host("gpu-lp-002")]


def test_create_aggregate(lp, fleet):
    name = fleet.alias("LP-lock")
    body = {"aggregate": {"name": name}}
    created = allowed(
        lp,
        "compute",
        "POST",
        "/os-aggregates",
        "2.41",
        body,
        rule="os_compute_api:os-aggregates:create",
    )
    fleet.conn.compute.delete_aggregate(created["aggregate"]["id"])


def test_delete_aggregate(lp, fleet):
    agg = fleet.conn.compute.create_aggregate(name=fleet.alias("LP-delete"))
    allowed(
        lp,
        "compute",
        "DELETE",
        f"/os-aggregates/{agg.id}",
        "2.41",
        rule="os_compute_api:os-aggregates:delete",
    )
    assert fleet.conn.compute.find_aggregate(agg.name) is None


def test_add_host_and_remove_host(lp, fleet):
    agg = fleet.conn.compute.create_aggregate(name=fleet.alias("LP-move"))
    host = fleet.host("gpu-lp-003")
    try:
        path = f"/os-aggregates/{agg.id}/action"
        added = allowed(
            lp,
            "compute",
            "POST",
            path,
            "2.41",
            {"add_host": {"host": host}},
            rule="os_compute_api:os-aggregates:add_host",
        )
        assert added["aggregate"]["hosts"] == [host]
        removed = allowed(
            lp,
            "compute",
            "POST",
            path,
            "2.41",
            {"remove_host": {"host": host}},
            rule="os_compute_api:os-aggregates:remove_host",
        )
        assert removed["aggregate"]["hosts"] == []
    finally:
        fleet.conn.compute.delete_aggregate(fleet.conn.compute.get_aggregate(agg.id))


def test_set_metadata(lp, fleet):
    path = f"/os-aggregates/{fleet.agg('LP-other')}/action"
    for value in ("LP-pool", None):  # set, then delete with null (origin records, the lock's claim)
        body = {"set_metadata": {"metadata": {"gpupool.origin.probe": value}}}
        answer = allowed(
            lp, "compute", "POST", path, "2.41", body, rule="os_compute_api:os-aggregates:set_metadata"
        )
        assert answer["aggregate"]["metadata"].get("gpupool.origin.probe") == value


def test_list_compute_services(lp, fleet):
    rule = "os_compute_api:os-services:list"
    body = allowed(lp, "compute", "GET", "/os-services?binary=nova-compute", "2.53", rule=rule)
    assert fleet.host("gpu-lp-001") in {s["host"] for s in body["services"]}
    path = f"/os-services?binary=nova-compute&host={fleet.host('gpu-lp-001')}"
    body = allowed(lp, "compute", "GET", path, "2.53", rule=rule)
    assert [s["host"] for s in body["services"]] == [fleet.host("gpu-lp-001")]


def test_disable_and_enable_a_compute_service(lp, fleet):
    path = f"/os-services/{host_ids(fleet, 'gpu-lp-002')['service']}"
    rule = "os_compute_api:os-services:update"
    reason = "gpupool: moving LP-pool -> LP-other [probe]"
    body = {"status": "disabled", "disabled_reason": reason}
    answer = allowed(lp, "compute", "PUT", path, "2.53", body, rule=rule)
    assert (answer["service"]["status"], answer["service"]["disabled_reason"]) == ("disabled", reason)
    answer = allowed(lp, "compute", "PUT", path, "2.53", {"status": "enabled"}, rule=rule)
    assert (answer["service"]["status"], answer["service"]["disabled_reason"]) == ("enabled", None)


def test_hypervisor_list_counts_other_projects_instances(lp, fleet, realnova):
    body = allowed(
        lp,
        "compute",
        "GET",
        "/os-hypervisors/detail",
        "2.87",
        rule="os_compute_api:os-hypervisors:list-detail",
    )
    counts = {h["service"]["host"]: h["running_vms"] for h in body["hypervisors"]}
    # the instance belongs to the admin project, not to gpupool's: counted all the same
    instance = host_ids(fleet, "gpu-lp-001")["instances"][0]
    assert fleet.conn.compute.get_server(instance).project_id == realnova.info["project_id"]
    assert realnova.info["project_id"] != realnova.least_privilege["project_id"]
    assert (counts[fleet.host("gpu-lp-001")], counts[fleet.host("gpu-lp-002")]) == (1, 0)


def test_hypervisor_show_with_servers_lists_other_projects_instances(lp, fleet):
    ids = host_ids(fleet, "gpu-lp-001")
    body = allowed(
        lp,
        "compute",
        "GET",
        f"/os-hypervisors/{ids['hypervisor']}?with_servers=true",
        "2.87",
        rule="os_compute_api:os-hypervisors:show",
    )
    # with_servers needs no rule beyond :show, and lists every project's instances on the host
    assert [s["uuid"] for s in body["hypervisor"]["servers"]] == ids["instances"]


def test_placement_allocations_of_a_host(lp, fleet):
    ids = host_ids(fleet, "gpu-lp-001")
    body = allowed(
        lp,
        "placement",
        "GET",
        f"/resource_providers/{ids['hypervisor']}/allocations",
        "1.0",
        rule="placement:resource_providers:allocations:list",
    )
    assert sorted(body["allocations"]) == ids["instances"]


# -- what the same credentials must not do ---------------------------------------------------------

NEVER = [
    # (id, service, method, path template, microversion, body, rule named in the 403);
    # {instance} is an instance of gpupool's own project: of another project, Nova answers 404
    # before it checks a policy (test_other_projects_servers_are_not_even_found)
    (
        "delete-server",
        "compute",
        "DELETE",
        "/servers/{instance}",
        None,
        None,
        "os_compute_api:servers:delete",
    ),
    ("show-server", "compute", "GET", "/servers/{instance}", None, None, "os_compute_api:servers:show"),
    (
        "list-all-servers",
        "compute",
        "GET",
        "/servers/detail?all_tenants=1",
        None,
        None,
        "os_compute_api:servers:detail",
    ),
    (
        "live-migrate",
        "compute",
        "POST",
        "/servers/{instance}/action",
        "2.30",
        {"os-migrateLive": {"host": None, "block_migration": "auto"}},
        "os_compute_api:os-migrate-server:migrate_live",
    ),
    ("list-migrations", "compute", "GET", "/os-migrations", None, None, "os_compute_api:os-migrations:index"),
    (
        "create-flavor",
        "compute",
        "POST",
        "/flavors",
        None,
        {"flavor": {"name": "lp-probe", "ram": 1024, "vcpus": 1, "disk": 10}},
        "os_compute_api:os-flavor-manage:create",
    ),
    (
        "delete-service",
        "compute",
        "DELETE",
        "/os-services/{service}",
        "2.53",
        None,
        "os_compute_api:os-services:delete",
    ),
    (
        "show-aggregate",
        "compute",
        "GET",
        "/os-aggregates/{agg}",
        "2.41",
        None,
        "os_compute_api:os-aggregates:show",
    ),
    (
        "update-aggregate-zone",
        "compute",
        "PUT",
        "/os-aggregates/{agg}",
        "2.41",
        {"aggregate": {"availability_zone": "elsewhere"}},
        "os_compute_api:os-aggregates:update",
    ),
    (
        "list-hypervisors",
        "compute",
        "GET",
        "/os-hypervisors",
        "2.87",
        None,
        "os_compute_api:os-hypervisors:list",
    ),
    (
        "hypervisor-servers-route",
        "compute",
        "GET",
        "/os-hypervisors/{host}/servers",
        "2.52",
        None,
        "os_compute_api:os-hypervisors:servers",
    ),
    (
        "list-resource-providers",
        "placement",
        "GET",
        "/resource_providers",
        None,
        None,
        "placement:resource_providers:list",
    ),
    (
        "provider-usages",
        "placement",
        "GET",
        "/resource_providers/{hypervisor}/usages",
        None,
        None,
        "placement:resource_providers:usages",
    ),
    (
        "consumer-allocations",
        "placement",
        "GET",
        "/allocations/{instance}",
        None,
        None,
        "placement:allocations:list",
    ),
    (
        "delete-allocations",
        "placement",
        "DELETE",
        "/allocations/{instance}",
        None,
        None,
        "placement:allocations:delete",
    ),
    (
        "create-user",
        "identity",
        "POST",
        "/users",
        None,
        {"user": {"name": "lp-probe", "domain_id": "default"}},
        "identity:create_user",
    ),
]


@pytest.mark.parametrize("what", NEVER, ids=[n[0] for n in NEVER])
def test_refused_with_the_gpupool_credentials(lp, fleet, what):
    _, service, method, template, microversion, body, rule = what
    ids = host_ids(fleet, "gpu-lp-001")
    path = template.format(
        instance=fleet.own_instance,
        service=ids["service"],
        hypervisor=ids["hypervisor"],
        host=fleet.host("gpu-lp-001"),
        agg=fleet.agg("LP-pool"),
    )
    status, answer = call(lp["gpupool"], service, method, path, microversion, body)
    assert (status, forbidden_rule(service, status, answer)) == (403, rule), f"{method} {path}: {answer}"
    # and the admin still may (the overrides took nothing away): the read-only ones, as a check
    if method == "GET":
        status, answer = call(fleet.conn, service, method, path, microversion)
        assert status == 200, f"admin {method} {path}: {status} {answer}"


@pytest.mark.parametrize(
    "method, suffix, microversion, body",
    [
        ("GET", "", None, None),
        ("DELETE", "", None, None),
        ("POST", "/action", "2.30", {"os-migrateLive": {"host": None, "block_migration": "auto"}}),
    ],
    ids=["show", "delete", "live-migrate"],
)
def test_other_projects_servers_are_not_even_found(lp, fleet, method, suffix, microversion, body):
    """Nova looks a server up within the caller's project unless the caller is admin: another
    project's instance is a 404 to the role, whatever the policy (the with_servers list and the
    hypervisor counts do show it, test_hypervisor_*)."""
    instance = host_ids(fleet, "gpu-lp-001")["instances"][0]
    status, answer = call(
        lp["gpupool"], "compute", method, f"/servers/{instance}{suffix}", microversion, body
    )
    assert status == 404 and "could not be found" in str(answer), (status, answer)
    assert fleet.conn.compute.get_server(instance).status == "ACTIVE"


def test_application_credential_cannot_make_more_credentials(lp, realnova):
    """An application credential is restricted by default: it cannot mint another one (or a trust)
    to escape its role restriction."""
    user_id = realnova.least_privilege["user_id"]
    body = {"application_credential": {"name": "lp-probe-escape"}}
    status, answer = call(
        lp["gpupool"], "identity", "POST", f"/users/{user_id}/application_credentials", None, body
    )
    assert status == 403, answer
    assert "application credential" in str(answer).lower(), answer


def test_forcing_a_service_down_is_the_same_rule_as_disabling_it(lp, fleet):
    """The one thing the role may do that gpupool never does: Nova checks PUT /os-services/{id}
    {"forced_down": true} against os_compute_api:os-services:update, the rule that disabling needs.
    Pinned so docs/openstack-access.md stays true if a later Nova splits the rule."""
    path = f"/os-services/{host_ids(fleet, 'gpu-lp-002')['service']}"
    status, answer = call(lp["gpupool"], "compute", "PUT", path, "2.53", {"forced_down": True})
    try:
        assert status == 200, answer
        assert answer["service"]["forced_down"] is True and answer["service"]["state"] == "down"
    finally:
        status, answer = call(fleet.conn, "compute", "PUT", path, "2.53", {"forced_down": False})
        assert status == 200, answer


# -- gpupool reconcile, the real CLI, with nothing but the application credential ------------------

FLEET = """
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: ["gpu-l40-[001-005]"]
  - name: L40-n3-spot
    hosts: [gpu-l40-006]
  - name: L40-n3-runpod
    hosts: []
hosts:
  - name: gpu-l40-001
    instances: 1
  - name: gpu-l40-002
    status: disabled
    disabled_reason: RMA 4711
"""
AGGREGATES = ["L40-n3", "L40-n3-spot", "L40-n3-runpod"]


def reconcile_as(realnova, d: Deployed, cloud: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`gpupool reconcile -f pools.yaml -o json --os-cloud CLOUD`, with a clouds.yaml that holds
    only that entry (no admin credentials to fall back on) and no OS_* variables but its path."""
    clouds = realnova.export_clouds(tmp_path / f"clouds-{cloud}.yaml", cloud)
    spec = {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": "l40"},
        "spec": {
            "gpuType": "L40",
            "cloud": cloud,
            "onDemand": {"aggregates": [d.name("L40-n3")]},
            "pools": {
                "spot": {"aggregate": d.name("L40-n3-spot"), "hosts": 0},
                "runpod": {"aggregate": d.name("L40-n3-runpod"), "hosts": 2},
            },
            "policy": {"maxConcurrentMoves": 2},
        },
    }
    (tmp_path / "pools.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    try:
        return subprocess.run(
            [GPUPOOL, "reconcile", "-f", str(tmp_path / "pools.yaml"), "-o", "json", "--os-cloud", cloud],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        clouds.unlink()  # it holds a secret; pytest keeps tmp_path


# nova.api.openstack.requestlog / placement.requestlog:
# ... [None req-ID USER PROJECT - - default default] 127.0.0.1 "GET /v2.1/path" status: 200 len: 1 microversion: 2.41 ...
_REQUEST_LOG = re.compile(
    r"\[\S+ req-\S+ (?P<user>\S+) (?P<project>\S+) [^\]]*\] \S+ "
    r'"(?P<method>[A-Z]+) (?P<path>\S+)" status: (?P<status>\d+) len: \d+ microversion: (?P<mv>\S+)'
)


class RequestLog:
    """The requests Nova and Placement logged from now on."""

    def __init__(self, realnova):
        self.files = {"compute": realnova.logs / "nova-api.log", "placement": realnova.logs / "placement.log"}
        self.offsets = {s: f.stat().st_size for s, f in self.files.items()}

    def since(self) -> list[dict]:
        found = []
        for service, path in self.files.items():
            with open(path, errors="replace") as log:
                log.seek(self.offsets[service])
                for line in log:
                    m = _REQUEST_LOG.search(line)
                    if m:
                        request = m.groupdict()
                        request["service"] = service
                        request["path"] = request["path"].removeprefix("/v2.1")
                        found.append(request)
        return found


def documented(request: dict) -> str | None:
    """The GPUPOOL_CALLS rule a logged request matches (service, method, path, microversion)."""
    for service, method, pattern, microversion, rule in GPUPOOL_CALLS:
        if (request["service"], request["method"], request["mv"]) == (service, method, microversion) and (
            re.fullmatch(pattern, request["path"])
        ):
            return rule
    return None


def test_gpupool_reconcile_converges_with_only_the_gpupool_operator_role(
    realnova, realnova_backend, tmp_path
):
    d = realnova_backend.materialize(Fleet.parse(FLEET))
    user = realnova.least_privilege["user_id"]
    log = RequestLog(realnova)
    result = reconcile_as(realnova, d, realnova.least_privilege["clouds"]["app_credential"], tmp_path)
    requests = log.since()
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr

    # the spec is met, as with admin credentials (test_cli_reconcile.py): the host with an
    # instance (of another project) and the host someone else disabled stay where they are
    state = aggregate_state(d, AGGREGATES)
    hosts = {name: agg["hosts"] for name, agg in state.items()}
    assert hosts == {
        "L40-n3": ["gpu-l40-001", "gpu-l40-002", "gpu-l40-005", "gpu-l40-006"],
        "L40-n3-spot": [],
        "L40-n3-runpod": ["gpu-l40-003", "gpu-l40-004"],
    }
    for host in ("gpu-l40-003", "gpu-l40-004", "gpu-l40-006"):
        s = service_state(d, host)
        assert (s["status"], s["disabled_reason"]) == ("enabled", None), (host, s)
    s = service_state(d, "gpu-l40-002")
    assert (s["status"], s["disabled_reason"]) == ("disabled", "RMA 4711")
    moves = json.loads(result.stdout)[0]["status"]["lastMoves"]
    assert sorted(d.logical(m["host"]) for m in moves) == ["gpu-l40-003", "gpu-l40-004", "gpu-l40-006"]
    # the move lock was taken and released with the same credentials
    assert d.conn.compute.find_aggregate("gpupool-lock") is None

    # what it asked, as Nova and Placement logged it: every Nova request was the gpupool user's,
    # each is a documented call at its documented microversion, none was refused, and the run
    # used every call of the table (Placement also logs nova-api's own requests, as nova)
    nova = [r for r in requests if r["service"] == "compute"]
    assert nova and {r["user"] for r in nova} == {user}, {(r["user"], r["path"]) for r in nova}
    ours = [r for r in requests if r["user"] == user]
    undocumented = [(r["service"], r["method"], r["path"], r["mv"]) for r in ours if documented(r) is None]
    assert undocumented == [], "gpupool made requests docs/openstack-access.md does not list"
    refused = [(r["method"], r["path"], r["status"]) for r in ours if r["status"] in ("401", "403")]
    assert refused == []
    used = {documented(r) for r in ours}
    table = {rule for *_, rule in GPUPOOL_CALLS}
    assert used == table, f"not exercised: {table - used}"


def test_gpupool_reconcile_without_the_role_fails_with_403(realnova, realnova_backend, tmp_path):
    d = realnova_backend.materialize(Fleet.parse(FLEET))
    before = aggregate_state(d, AGGREGATES)
    result = reconcile_as(realnova, d, realnova.least_privilege["clouds"]["norole"], tmp_path)
    assert result.returncode == 1, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    # One error line; the only other line names the cloud acted on, before anything is done.
    lines = [line for line in result.stderr.splitlines() if line.strip() and ": error: " in line]
    assert len(lines) == 1, result.stderr
    # Nova's own words: which rule refused it (its first request, the aggregate list)
    assert "os_compute_api:os-aggregates:index" in lines[0], lines[0]
    assert re.search(r"policy|403|forbidden", lines[0], re.IGNORECASE), lines[0]
    assert aggregate_state(d, AGGREGATES) == before


# -- last: it replaces the users' passwords and the application credential ------------------------


def test_least_privilege_setup_is_idempotent(realnova):
    """ensure_least_privilege() again (up() ran it once): the same role, project and users, their
    passwords reset, the application credential replaced, every clouds.yaml entry working."""
    before = realnova.least_privilege
    after = realnova.ensure_least_privilege()
    same = ("role_id", "project_id", "user_id", "norole_user_id")
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    assert after["application_credential_id"] != before["application_credential_id"]
    for entry, expected in (("app_credential", 200), ("password", 200), ("norole", 403)):
        conn = _connect(realnova.clouds_yaml, after["clouds"][entry])
        try:
            assert call(conn, "compute", "GET", "/os-aggregates", "2.41")[0] == expected, entry
        finally:
            conn.close()
