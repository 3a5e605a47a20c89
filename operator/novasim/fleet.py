"""The fleet file: which aggregates and hosts the simulated cloud starts with.

```yaml
cloud: {region: RegionOne, username: admin, password: secret, project: admin, token_lifetime_s: 3600}
aggregates:
  - name: L40-n3
    metadata: {availability_zone: nova}
    hosts: [gpu-l40-001, "gpu-l40-[002-040]"]
hosts:
  - name: "gpu-l40-[038-040]"
    state: down                 # up | down (nova-compute heartbeat)
    status: disabled            # enabled | disabled
    disabled_reason: RMA 4711
    instances: 2                # a count, or a list of {name, flavor, status}
```
Hosts named only under an aggregate exist as up, enabled and empty. A bad file raises
FleetError naming the file, the line and the key, and what to write instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_RANGE = re.compile(r"^(?P<prefix>[^\[\]]*)\[(?P<lo>\d+)-(?P<hi>\d+)\](?P<suffix>[^\[\]]*)$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
INSTANCE_STATUSES = ("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR", "BUILD", "SHELVED", "RESCUE")


class FleetError(ValueError):
    """A fleet file that cannot be used; the message says where and what to fix."""


@dataclass
class CloudSettings:
    region: str = "RegionOne"
    username: str = "admin"
    password: str = "secret"
    project: str = "admin"
    token_lifetime_s: float = 3600.0


@dataclass
class InstanceSpec:
    name: str
    flavor: str = "gpu.standard"
    status: str = "ACTIVE"
    # The flavor's extra specs as the server shows them (2.47+), e.g. {"pci_passthrough:alias": "l40:2"}.
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass
class HostSpec:
    name: str
    state: str = "up"
    status: str = "enabled"
    disabled_reason: str | None = None
    instances: list[InstanceSpec] = field(default_factory=list)


@dataclass
class AggregateSpec:
    name: str
    metadata: dict[str, str]
    hosts: list[str]


@dataclass
class Fleet:
    cloud: CloudSettings
    aggregates: list[AggregateSpec]
    hosts: dict[str, HostSpec]


def expand(pattern: str) -> list[str]:
    """`gpu-l40-[002-004]` -> gpu-l40-002, gpu-l40-003, gpu-l40-004 (zero padding kept)."""
    m = _RANGE.match(pattern)
    if not m:
        if "[" in pattern or "]" in pattern:
            raise ValueError(f"{pattern!r} is not a host range; write e.g. gpu-l40-[001-040]")
        return [pattern]
    lo, hi = int(m["lo"]), int(m["hi"])
    if lo > hi:
        raise ValueError(f"{pattern!r}: the range runs backwards ({m['lo']} > {m['hi']})")
    width = len(m["lo"])
    return [f"{m['prefix']}{i:0{width}d}{m['suffix']}" for i in range(lo, hi + 1)]


class _Where:
    """Finds the line of a key path in the YAML node tree, for error messages."""

    def __init__(self, source: str, root: yaml.Node | None):
        self.source = source
        self.root = root

    def line(self, path: tuple) -> int | None:
        node = self.root
        best = node
        for part in path:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                node = None
            if node is None:
                break
            best = node
        return best.start_mark.line + 1 if best is not None else None

    def error(self, path: tuple, message: str) -> FleetError:
        key = _path_text(path)
        line = self.line(path)
        at = f":{line}" if line else ""
        return FleetError(f"{self.source}{at}: {key + ': ' if key else ''}{message}")


def _path_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the fleet file ({exc.strerror})") from None
    return parse_fleet(text, source=str(path))


def parse_fleet(text: str, source: str = "<fleet>") -> Fleet:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise FleetError(f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    where = _Where(source, root)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise where.error((), "the fleet must be a mapping with `aggregates` and `hosts`")
    _no_unknown_keys(where, (), data, {"cloud", "aggregates", "hosts"})
    cloud = _parse_cloud(where, data.get("cloud") or {})
    aggregates = _parse_aggregates(where, data.get("aggregates") or [])
    hosts: dict[str, HostSpec] = {}
    for agg in aggregates:
        for name in agg.hosts:
            hosts.setdefault(name, HostSpec(name))
    for i, entry in enumerate(_list(where, ("hosts",), data.get("hosts") or [])):
        _parse_host(where, ("hosts", i), entry, hosts)
    return Fleet(cloud=cloud, aggregates=aggregates, hosts=hosts)


def _list(where: _Where, path: tuple, value: Any) -> list:
    if not isinstance(value, list):
        raise where.error(path, f"must be a list, not {type(value).__name__}")
    return value


def _no_unknown_keys(where: _Where, path: tuple, data: dict, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise where.error(path + (key,), f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _parse_cloud(where: _Where, data: Any) -> CloudSettings:
    if not isinstance(data, dict):
        raise where.error(("cloud",), "must be a mapping")
    _no_unknown_keys(
        where, ("cloud",), data, {"region", "username", "password", "project", "token_lifetime_s"}
    )
    settings = CloudSettings()
    for key in ("region", "username", "password", "project"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise where.error(("cloud", key), "must be a non-empty string")
            setattr(settings, key, data[key])
    if "token_lifetime_s" in data:
        value = data["token_lifetime_s"]
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise where.error(("cloud", "token_lifetime_s"), "must be a positive number of seconds")
        settings.token_lifetime_s = float(value)
    return settings


def _parse_aggregates(where: _Where, data: Any) -> list[AggregateSpec]:
    aggregates: list[AggregateSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(_list(where, ("aggregates",), data)):
        path = ("aggregates", i)
        if not isinstance(entry, dict):
            raise where.error(path, "each aggregate is a mapping with name, metadata and hosts")
        _no_unknown_keys(where, path, entry, {"name", "metadata", "hosts"})
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise where.error(path + ("name",), "every aggregate needs a name")
        if name in seen:
            raise where.error(path + ("name",), f"aggregate {name!r} is listed twice")
        seen.add(name)
        metadata = entry.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise where.error(path + ("metadata",), "must be a mapping of string keys to values")
        members: list[str] = []
        for j, pattern in enumerate(_list(where, path + ("hosts",), entry.get("hosts") or [])):
            members.extend(_host_names(where, path + ("hosts", j), pattern))
        duplicates = sorted({h for h in members if members.count(h) > 1})
        if duplicates:
            raise where.error(path + ("hosts",), f"hosts listed twice: {', '.join(duplicates)}")
        aggregates.append(
            AggregateSpec(
                name=name,
                metadata={str(k): "" if v is None else str(v) for k, v in metadata.items()},
                hosts=members,
            )
        )
    return aggregates


def _host_names(where: _Where, path: tuple, pattern: Any) -> list[str]:
    if not isinstance(pattern, str):
        raise where.error(path, "a host is a name or a range such as gpu-l40-[001-040]")
    try:
        names = expand(pattern)
    except ValueError as exc:
        raise where.error(path, str(exc)) from None
    for name in names:
        if not _HOST_NAME.match(name):
            raise where.error(path, f"{name!r} is not a valid host name (letters, digits, '.', '_', '-')")
    return names


def _parse_host(where: _Where, path: tuple, entry: Any, hosts: dict[str, HostSpec]) -> None:
    if not isinstance(entry, dict):
        raise where.error(path, "each host is a mapping with at least a name")
    _no_unknown_keys(where, path, entry, {"name", "state", "status", "disabled_reason", "instances"})
    if "name" not in entry:
        raise where.error(path, "every host needs a name")
    names = _host_names(where, path + ("name",), entry["name"])
    state = entry.get("state", "up")
    if state not in ("up", "down"):
        raise where.error(path + ("state",), f"{state!r} is not a service state; use up or down")
    status = entry.get("status", "enabled")
    if status not in ("enabled", "disabled"):
        raise where.error(path + ("status",), f"{status!r} is not a service status; use enabled or disabled")
    reason = entry.get("disabled_reason")
    if reason is not None and not isinstance(reason, str):
        raise where.error(path + ("disabled_reason",), "must be a string")
    if reason and status != "disabled":
        raise where.error(
            path + ("disabled_reason",), "only a disabled service has a reason; add status: disabled"
        )
    for name in names:  # a later entry for the same host changes only the keys it gives
        spec = hosts.setdefault(name, HostSpec(name))
        if "state" in entry:
            spec.state = state
        if "status" in entry:
            spec.status = status
            spec.disabled_reason = reason
        if "instances" in entry:
            spec.instances = _parse_instances(where, path + ("instances",), entry["instances"], name)


def _parse_instances(where: _Where, path: tuple, value: Any, host: str) -> list[InstanceSpec]:
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise where.error(path, "a count (e.g. 2) or a list of {name, flavor, status, extra_specs}")
    if isinstance(value, int):
        if value < 0:
            raise where.error(path, "cannot be negative")
        return [InstanceSpec(name=f"{host}-vm-{n + 1}") for n in range(value)]
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise where.error(path + (i,), "each instance is a mapping with at least a name")
        _no_unknown_keys(where, path + (i,), item, {"name", "flavor", "status", "extra_specs"})
        extra = item.get("extra_specs", {})
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise where.error(
                path + (i, "extra_specs"), 'a mapping of strings, e.g. {"pci_passthrough:alias": "l40:2"}'
            )
        status = str(item.get("status", "ACTIVE")).upper()
        if status not in INSTANCE_STATUSES:
            raise where.error(
                path + (i, "status"), f"{status!r} is not a server status; use one of {INSTANCE_STATUSES}"
            )
        result.append(
            InstanceSpec(
                name=item["name"],
                flavor=str(item.get("flavor", "gpu.standard")),
                status=status,
                extra_specs=extra,
            )
        )
    return result
