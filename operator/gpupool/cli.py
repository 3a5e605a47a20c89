"""The `gpupool` command line: plan | reconcile | stop | resume | run | crd | sim.

Errors a user can fix (a bad spec, an unknown cloud, wrong credentials, an unreachable Keystone)
are one line on stderr saying what is wrong and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import yaml

from .model import Outcome

EXIT_CONVERGED = 0
EXIT_ERROR = 1
EXIT_BLOCKED = 2
EXIT_USAGE = 64  # sysexits' EX_USAGE: a mistyped command line is not "blocked" (2)
# A run that would move more hosts than this asks first, on a terminal (`--yes` to skip).
ASK_ABOVE = 5
# `gpupool run`: the move lock is renewed every third of its TTL, and one Nova write can take seconds.
LOCK_TTL_MIN_S = 10.0
# `gpupool run`: kopf takes a few seconds to write this replica's first peering record.
WATCHDOG_MIN_S = 10.0


class UserError(Exception):
    """Something the user can fix; the message says how."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (2 means "blocked" for gpupool)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: usage error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpupool-operator")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _at_least(minimum: float, unit: str = "seconds", *, kind=float, zero: str | None = None):
    """An argparse `type=`: a number of at least `minimum` (0 as well, meaning `zero`, when given).

    A bad value is one usage line naming what is accepted: `argument --interval: must be at least
    1 (seconds), got -1`.
    """
    accepted = f"at least {minimum:g} ({unit})" + (f", or 0 ({zero})" if zero else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, {accepted}, got {text!r}") from None
        if not math.isfinite(value) or (value < minimum and not (zero and value == 0)):
            raise argparse.ArgumentTypeError(f"must be {accepted}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _listen_address(text: str) -> str:
    """An argparse `type=`: HOST:PORT ([HOST]:PORT for IPv6, :PORT for every address)."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT with a port from 1 to 65535 (e.g. 0.0.0.0:9464, or :9464 for "
            "every address)"
        )
    return f"{host}:{int(port)}"


def _liveness_url(text: str) -> str:
    """An argparse `type=`: the http:// URL kopf serves its liveness probe at."""
    from urllib.parse import urlsplit

    example = "e.g. http://0.0.0.0:8080/healthz"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http:// URL with a port from 1 to 65535 ({example})"
        ) from None
    if parts.scheme != "http" or not parts.hostname or not parts.path.startswith("/") or port == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http://HOST:PORT/PATH URL ({example}; kopf serves plain http only)"
        )
    return text


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _operator_namespace() -> str:
    return os.environ.get("POD_NAMESPACE") or "gpupool-system"


def _kill_switch(text: str) -> tuple[str, str]:
    """An argparse `type=`: NAMESPACE/NAME of the kill-switch ConfigMap; NAME alone is in the
    operator's own namespace ($POD_NAMESPACE, else gpupool-system). A name Kubernetes cannot hold
    is refused: no such ConfigMap could ever exist, and the switch would silently never work."""
    namespace, slash, name = text.rpartition("/")
    if not slash:
        namespace = _operator_namespace()
    if not _DNS_LABEL.fullmatch(namespace) or not _DNS_SUBDOMAIN.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAMESPACE/NAME or NAME of a ConfigMap (lower-case letters, digits and '-'; "
            f"NAME alone is in {_operator_namespace()})"
        )
    return namespace, name


def _add_cloud_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--os-cloud",
        default=None,
        metavar="NAME",
        help="clouds.yaml entry to use instead of each spec's `cloud` (only when given here: "
        "$OS_CLOUD never overrides a spec)",
    )


_PLAN_EXAMPLES = """examples:
  gpupool plan -f examples/pools/ --os-cloud staging      every pool spec in a folder, against staging
  gpupool plan -f l40.yaml -o json                         the same as JSON (a list, one item per spec)

exit status: 0 nothing blocks the specs, 2 something does (a blocker, a conflict), 1 error, 64 usage
"""

_RECONCILE_EXAMPLES = """examples:
  gpupool reconcile -f l40.yaml                            move hosts on the cloud the spec names
  gpupool reconcile -f examples/pools/ --yes -o json       no question asked, JSON report on stdout

exit status: 0 converged, 2 blocked or stopped (the report says why), 1 error, 64 usage
"""


def _add_plan(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what would move and why not more, moving nothing",
        description=_plan.__doc__,
        epilog=_PLAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common()],
    )
    _add_spec_arguments(parser)
    parser.set_defaults(handler=_plan)


def _add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """What plan and reconcile share: the spec files, the cloud, the output format."""
    parser.add_argument(
        "-f",
        "--filename",
        required=True,
        action="append",
        metavar="FILE|FOLDER",
        help="GpuHostPool YAML (or JSON) file, or a folder of .yaml/.yml/.json files; give -f as often as "
        "needed",
    )
    _add_cloud_argument(parser)
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")


def _add_reconcile(subparsers) -> None:
    parser = subparsers.add_parser(
        "reconcile",
        help="move hosts until the cloud matches the specs, or nothing more can move",
        description=_reconcile.__doc__,
        epilog=_RECONCILE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common()],
    )
    _add_spec_arguments(parser)
    parser.add_argument(
        "--max-passes",
        type=_at_least(1, "passes", kind=int),
        default=10,
        help="give up after this many passes (default 10)",
    )
    parser.add_argument(
        "--wait",
        type=_at_least(0),
        default=300.0,
        metavar="SECONDS",
        help="while another gpupool process moves hosts on the cloud, wait this long for it; 0: do not "
        "wait (default 300)",
    )
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help=f"do not ask before moving more than {ASK_ABOVE} hosts (it only asks on a terminal)",
    )
    parser.set_defaults(handler=_reconcile)


def _add_sim(subparsers) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="serve the built-in simulated cloud (Keystone v3, Nova v2.1, Placement) on 127.0.0.1",
        description="Serve novasim, a simulated OpenStack cloud speaking the real Keystone, Nova and "
        "Placement APIs.",
        parents=[_common()],
    )
    # The simulator is a separate package, loaded only when asked for: the operator never imports it.
    from novasim import cli as novasim_cli

    novasim_cli.add_arguments(parser)
    parser.set_defaults(handler=novasim_cli.run)


def _add_run(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the Kubernetes operator (watches GpuHostPools cluster-wide)",
        description="Run the operator: kopf watches GpuHostPools; of the peered replicas, one moves hosts.",
        parents=[_common()],
    )
    _add_run_arguments(parser)
    parser.set_defaults(handler=_run_operator, check=lambda args: _check_run_arguments(parser, args))


def _run_operator(args) -> int:
    from . import process  # kopf is imported only when the operator runs
    from .kube import KubeConfigError

    try:
        return process.run(args)
    except (KubeConfigError, process.ListenError) as exc:
        raise UserError(str(exc)) from None


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=_at_least(1),
        default=60.0,
        metavar="SECONDS",
        help="drift check period, at least 1 (default 60)",
    )
    parser.add_argument(
        "--liveness",
        type=_liveness_url,
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz (default: off); the operator "
        "does not start when it cannot listen there",
    )
    parser.add_argument(
        "--metrics",
        type=_listen_address,
        default=None,
        metavar="ADDR",
        help="serve Prometheus metrics on ADDR (host:port, e.g. 0.0.0.0:9464) at /metrics (default: off); "
        "the operator does not start when it cannot listen there",
    )
    parser.add_argument(
        "--gpu-usage-interval",
        type=_at_least(1, zero="never"),
        default=300.0,
        metavar="SECONDS",
        help="how often to read GPU usage per cloud (a server list, 1,000 servers a request); 0: never "
        "(default 300)",
    )
    parser.add_argument(
        "--log-format",
        choices=["plain", "json"],
        default="plain",
        help="log lines as plain text or as JSON objects, for log pipelines (default plain)",
    )
    parser.add_argument(
        "--peering",
        default="gpupool-operator",
        metavar="NAME",
        help="the ClusterKopfPeering the replicas share; exactly one of them acts (default gpupool-operator)",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: for a single replica only (two standalone replicas would both act)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=_at_least(3, "whole seconds", kind=int),
        default=15,
        metavar="SECONDS",
        help="how long a silent replica's peering record holds off the others, at least 3 (default 15)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="kopf peering priority (default: by seniority, so the replica that started first acts)",
    )
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME"),
        help="this replica's name in the peering records and Events (default: $POD_NAME)",
    )
    parser.add_argument(
        "--lock-ttl",
        type=_at_least(LOCK_TTL_MIN_S),
        default=30.0,
        metavar="SECONDS",
        help="how long the cloud's move lock holds without renewal; it is renewed every third of it, a "
        "replica paused longer than half of it proves its hold before writing again, and a dead holder's "
        f"lock is taken over after it; at least {LOCK_TTL_MIN_S:g}, so that a slow Nova write does not "
        "lose it (default 30)",
    )
    parser.add_argument(
        "--watchdog",
        type=_at_least(WATCHDOG_MIN_S),
        default=None,
        metavar="SECONDS",
        help="exit non-zero (for Kubernetes to restart it) when the API server stays unreadable or "
        "kopf stops renewing this replica's peering record this long; at least "
        f"{WATCHDOG_MIN_S:g} and more than --peering-lifetime (default: 4 peering lifetimes, at least 60)",
    )
    parser.add_argument(
        "--kill-switch",
        type=_kill_switch,
        default="gpupool-stop",
        metavar="[NAMESPACE/]NAME",
        help="while this ConfigMap exists, no move starts on any cloud; NAME alone is in the operator's "
        "namespace, $POD_NAMESPACE, else gpupool-system (default: gpupool-stop, i.e. "
        f"{_operator_namespace()}/gpupool-stop here)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=_at_least(0),
        default=60.0,
        metavar="SECONDS",
        help="on SIGTERM, how long moves under way may take to finish; 0: exit at once, the next "
        "leader resumes them (default 60)",
    )


def _check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What one argument's `type=` cannot check: how the arguments fit together."""
    if args.watchdog is not None and args.watchdog <= args.peering_lifetime:
        parser.error(
            f"argument --watchdog: must be more than --peering-lifetime ({args.peering_lifetime} s), "
            f"got {args.watchdog:g}: a live replica's record may go that long unrenewed"
        )


_STOP_EXAMPLES = """examples:
  gpupool stop --os-cloud prod --reason "INC-42: Nova upgrade"   no gpupool process starts a move on prod
  gpupool resume --os-cloud prod                                 moves may start again

The switch is an aggregate named gpupool-stop in the cloud (`openstack aggregate create gpupool-stop`
does the same): the CLI and the operator read it with every snapshot. Moves under way finish, so the
switch itself leaves nothing half-done; a move a crash left half-done waits for `gpupool resume`
(docs/runbook.md). `gpupool plan` says when the switch is on (exit 2).
"""


def _add_stop(subparsers) -> None:
    for name, handler, text in (
        ("stop", _stop, "turn the cloud's kill switch on: no gpupool process starts a move there"),
        ("resume", _resume, "turn the cloud's kill switch off"),
    ):
        parser = subparsers.add_parser(
            name,
            help=text,
            description=text,
            epilog=_STOP_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[_common()],
        )
        parser.add_argument(
            "--os-cloud", required=True, metavar="NAME", help="the clouds.yaml entry of the cloud"
        )
        if name == "stop":
            parser.add_argument("--reason", required=True, help="why, for whoever finds it on (kept in Nova)")
        parser.set_defaults(handler=handler)


def _stop(args) -> int:
    """Create the gpupool-stop aggregate with the reason, who and when in its metadata."""
    import getpass
    import socket

    from .cloud import Cloud
    from .intent import STOP_AGGREGATE, STOP_REASON_KEY
    from .status import timestamp

    cloud = Cloud(args.os_cloud)
    try:
        print(f"gpupool stop: {_cloud_line(args.os_cloud, cloud)}", file=sys.stderr)
        marker = cloud.create_aggregate(STOP_AGGREGATE)
        if marker is None:
            print(f"gpupool stop: the kill switch of {args.os_cloud!r} was on already", file=sys.stderr)
            return EXIT_CONVERGED
        who = f"{getpass.getuser()} on {socket.gethostname()}"
        cloud.set_aggregate_metadata(
            marker, {STOP_REASON_KEY: args.reason[:200], "by": who, "since": timestamp(time.time())}
        )
    finally:
        cloud.close()
    print(f"gpupool stop: the kill switch of {args.os_cloud!r} is on: no gpupool process starts a move there")
    return EXIT_CONVERGED


def _cloud_line(name: str, cloud, source: str | None = None) -> str:
    """Which cloud (and where its name came from), clouds.yaml and Keystone a command acts on,
    said before it does."""
    from .cloud import config_file

    named = f"cloud {name!r} ({source})" if source else f"cloud {name!r}"
    return f"{named} from {config_file() or 'the environment'}, Keystone {cloud.auth_url}"


def _resume(args) -> int:
    from .cloud import Cloud
    from .intent import STOP_AGGREGATE

    cloud = Cloud(args.os_cloud)
    try:
        print(f"gpupool resume: {_cloud_line(args.os_cloud, cloud)}", file=sys.stderr)
        marker = cloud.snapshot().aggregates.get(STOP_AGGREGATE)
        if marker is None or not cloud.delete_aggregate(marker):
            print(f"gpupool resume: the kill switch of {args.os_cloud!r} was off already", file=sys.stderr)
            return EXIT_CONVERGED
    finally:
        cloud.close()
    print(f"gpupool resume: the kill switch of {args.os_cloud!r} is off: moves may start again")
    return EXIT_CONVERGED


def _add_crd(subparsers) -> None:
    parser = subparsers.add_parser(
        "crd", help="print the GpuHostPool CustomResourceDefinition (YAML)", parents=[_common()]
    )
    parser.set_defaults(handler=_crd)


def _crd(args) -> int:
    """Print the CRD generated from the api models (crds/ holds the same text)."""
    from .crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return EXIT_CONVERGED


_SPEC_SUFFIXES = (".yaml", ".yml", ".json")  # as `kubectl apply -f DIR` reads, in any case


def _spec_files(paths: list[str], command: str) -> list:
    """The files to read: each file given, and the .yaml/.yml/.json files of each folder given (sorted
    by name, in any case; not recursive). Anything else in a folder gets a note on stderr, one line
    per file, so that nothing is left out without a word (dot files, e.g. .gitkeep, are ignored)."""
    from pathlib import Path

    files, seen = [], set()
    for path in paths:
        root = Path(path)
        if root.is_dir():
            found = []
            for entry in sorted(root.iterdir()):
                if entry.name.startswith("."):
                    continue
                if entry.is_file() and entry.suffix.lower() in _SPEC_SUFFIXES:
                    found.append(entry)
                else:
                    why = "a folder (not read recursively)" if entry.is_dir() else "not .yaml, .yml or .json"
                    print(f"gpupool {command}: note: {entry}: skipped: {why}", file=sys.stderr)
            if not found:
                raise UserError(f"{path}: no .yaml, .yml or .json files in this folder")
        elif root.is_file():
            found = [root]
        else:
            raise UserError(f"{path}: no such file or folder")
        for file in found:
            if file.resolve() not in seen:  # the same file twice (-f a.yaml -f .) is read once
                seen.add(file.resolve())
                files.append(file)
    return files


def _read_spec_text(file) -> str:
    """The text of a spec file, or a UserError saying what to fix: not UTF-8 (with the line), not a
    readable file. JSON is YAML, except that YAML refuses a tab before a token: in valid JSON a tab
    can only be whitespace between tokens, so it is read as a space."""
    data = file.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"{file}:1: UTF-16 text, not UTF-8: save the file as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{file}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} in line {line}): save the file as UTF-8"
        ) from None
    if file.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{file}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        text = text.replace("\t", " ")
    return text


def _load_pools(paths: list[str], command: str = "plan"):
    """Every GpuHostPool in the files and folders given (-f, as often as wanted), in that order."""
    from .api import SpecError, load_pools_with_lines

    pools, problems = [], []
    where: dict[str, list[str]] = {}  # name -> ["file:line", ...]
    for file in _spec_files(paths, command):
        try:
            text = _read_spec_text(file)
            found = load_pools_with_lines(text, source=str(file))
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        except UserError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:
            problems.append(f"{file}: cannot read it: {exc.strerror or exc}")
            continue
        for pool, line in found:
            where.setdefault(pool.name, []).append(f"{file}:{line}")
            pools.append(pool)
    for name, places in where.items():
        if len(places) > 1:
            problems.append(
                f"{places[-1]}: metadata.name: GpuHostPool {name!r} is defined in {len(places)} places "
                f"({', '.join(places)}); keep one (or rename one)"
            )
    if problems:
        raise UserError("\n".join(problems))
    return pools


@contextmanager
def _clouds(pools, args) -> Iterator[dict]:
    """Connections to every cloud the specs act on. Each is named on stderr before anything is
    done with it (the entry, where the name came from, the clouds.yaml, Keystone's URL): a run
    never acts on a cloud the user did not see named."""
    from .cloud import Cloud

    users: dict[str, list[str]] = {}
    for pool in pools:
        users.setdefault(_cloud_of(pool, args), []).append(pool.name)
    ignored = os.environ.get("OS_CLOUD")
    if ignored and not args.os_cloud and any(name != ignored for name in users):
        print(
            f"gpupool {args.command}: note: OS_CLOUD={ignored} is not used: each spec's `cloud` names its "
            "cloud (pass --os-cloud to override it)",
            file=sys.stderr,
        )
    opened = {}
    try:
        for name in sorted(users):
            cloud = opened[name] = Cloud(name)
            source = "--os-cloud" if args.os_cloud else f"spec.cloud of {', '.join(users[name])}"
            print(f"gpupool {args.command}: {_cloud_line(name, cloud, source)}", file=sys.stderr)
        yield opened
    finally:
        for cloud in opened.values():
            cloud.close()


def _cloud_of(pool, args) -> str:
    return args.os_cloud or pool.spec.cloud


def _conflicts(pools, args) -> dict[str, str]:
    """GpuHostPools that name an aggregate an earlier one (in file order) on the same cloud manages.

    Two resources managing one aggregate would undo each other's moves; as in the operator, the
    earlier keeps the aggregate and the later one moves nothing and says why.
    """
    from .conflicts import find_conflicts_per_cloud

    return find_conflicts_per_cloud(
        (_cloud_of(pool, args), pool.name, f"{index:09d}", pool.spec) for index, pool in enumerate(pools)
    )


def _conflict_status(message: str) -> dict:
    return _verdict_status(
        "Conflict", message, blockers=[{"pool": "-", "reason": "Conflict", "message": message}]
    )


def _verdict_status(reason: str, message: str, previous: dict | None = None, blockers=None) -> dict:
    """The status of a spec no pass ran for: the same verdicts as the operator's (status.verdict)."""
    from .api import BlockerStatus
    from .status import verdict, verdict_status, wire

    status = verdict_status(
        verdict(reason, message),
        now=time.time(),
        previous=previous,
        blockers=[BlockerStatus.model_validate(b) for b in blockers] if blockers is not None else None,
    )
    return wire(status)


def _render(docs: list[dict], output: str) -> str:
    """The report: one shape whatever the number of specs (JSON and YAML: a list, one item each)."""
    if output == "json":
        return json.dumps(docs, indent=2)
    if output == "yaml":
        return yaml.safe_dump(docs, sort_keys=False)
    from .report import table

    return "\n".join(table(doc) for doc in docs)


def _neighbours(pools, args, conflicts) -> dict:
    """{resource name: Neighbours}: the aggregates the other specs on the same cloud manage (those
    set aside for a conflict move nothing, and do not count)."""
    from .conflicts import neighbours_of

    by_cloud: dict[str, list] = {}
    for pool in pools:
        if pool.name not in conflicts:
            by_cloud.setdefault(_cloud_of(pool, args), []).append((pool.name, pool.spec))
    return {pool.name: neighbours_of(pool.name, by_cloud.get(_cloud_of(pool, args), [])) for pool in pools}


def _gpus_in_use(name: str, cloud) -> dict[str, int] | None:
    """GPU usage for the plan; a cloud that will not tell (its policy) gets a note, not an error."""
    from .errors import CloudError

    try:
        return cloud.gpus_in_use()
    except CloudError as exc:
        print(f"note: GPU usage on cloud {name!r} not shown: {exc}", file=sys.stderr)
        return None


def _plan(args) -> int:
    """Show, for each GpuHostPool, which hosts would move where and what stops more from moving."""
    from .intent import stop_reason
    from .model import PassReport
    from .planner import plan
    from .reconciler import recover_in_flight
    from .status import build_status, wire

    pools = _load_pools(args.filename, args.command)
    conflicts = _conflicts(pools, args)
    neighbours = _neighbours(pools, args, conflicts)
    docs = []
    with _clouds(pools, args) as clouds:
        snapshots = {name: cloud.snapshot() for name, cloud in clouds.items()}
        gpus = {name: _gpus_in_use(name, cloud) for name, cloud in clouds.items()}
        # A plan shows what would move; with a kill switch on, nothing will until `gpupool resume`.
        stopped = {name: why for name, snap in snapshots.items() if (why := stop_reason(snap.aggregates))}
        for name, why in sorted(stopped.items()):
            print(f"note: cloud {name!r}: {why}; nothing moves until then", file=sys.stderr)
        for pool in pools:
            if pool.name in conflicts:
                status = _conflict_status(conflicts[pool.name])
                status.pop("conditions")
                docs.append({"name": pool.name, "status": status})
                continue
            snapshot = snapshots[_cloud_of(pool, args)]
            in_flight = recover_in_flight(pool.spec, snapshot)
            report = PassReport(
                plan=plan(
                    pool.spec, snapshot, in_flight=in_flight, all_moves=True, neighbours=neighbours[pool.name]
                ),
                dry_run=True,
                finished=True,
                gpu_usage=gpus[_cloud_of(pool, args)],
                gpus_per_host=pool.spec.gpus_per_host,
            )
            status = wire(build_status(report, now=time.time()))
            # What a plan says is in plannedMoves and blockers; conditions describe a resource's
            # live state (and would call this a dry run), so a plan has none.
            status.pop("conditions", None)
            status["summary"].pop("message", None)
            docs.append({"name": pool.name, "status": status})
    print(_render(docs, args.output))
    # Something blocks a spec (a blocker, a conflict, a kill switch): a script sees it in the exit status.
    blocked = stopped or any(doc["status"].get("blockers") for doc in docs)
    return EXIT_BLOCKED if blocked else EXIT_CONVERGED


def _lock_owner() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return f"gpupool reconcile (user {user}, pid {os.getpid()} on {socket.gethostname()})"


def _take_lock(lock, cloud, spec, neighbours, snapshot, args, name: str):
    """The snapshot to work on once this process may move hosts; None when it gave up waiting."""
    from .reconciler import has_work

    deadline = time.monotonic() + max(0.0, args.wait)
    told = False
    if not lock.held and not has_work(spec, snapshot, neighbours):
        lock.reap(snapshot)
    while not lock.held and has_work(spec, snapshot, neighbours):
        holder = lock.acquire(snapshot)
        if holder is None:
            return cloud.snapshot()  # what we saw may be the previous holder's work in progress
        if time.monotonic() >= deadline:
            return None
        if not told:
            print(
                f"{name}: waiting: another gpupool process is moving hosts on this cloud: {holder.describe()}",
                file=sys.stderr,
            )
            told = True
        time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
        snapshot = cloud.snapshot()
    return snapshot


def _reconcile(args) -> int:
    """Move hosts until every GpuHostPool matches the cloud. Exit 0 converged, 2 blocked, 1 error."""
    from .movelock import MoveLock
    from .reconciler import Reconciler
    from .report import Progress
    from .status import build_status, wire

    pools = _load_pools(args.filename, args.command)
    conflicts = _conflicts(pools, args)
    neighbours = _neighbours(pools, args, conflicts)
    docs = []
    worst = EXIT_CONVERGED
    with _clouds(pools, args) as clouds:
        locks = {name: MoveLock(cloud, _lock_owner()) for name, cloud in clouds.items()}
        try:
            for pool in pools:
                if pool.name in conflicts:
                    print(f"{pool.name}: Conflict: {conflicts[pool.name]}", file=sys.stderr)
                    docs.append({"name": pool.name, "status": _conflict_status(conflicts[pool.name])})
                    worst = max(worst, EXIT_BLOCKED)
                    continue
                cloud = clouds[_cloud_of(pool, args)]
                lock = locks[_cloud_of(pool, args)]
                reconciler = Reconciler(cloud, fence=lock.fence)
                progress = Progress(pool.name, stream=sys.stderr)
                status: dict | None = None
                attention = False
                converged = False
                if not _confirmed(pool, cloud, neighbours[pool.name], args):
                    status = _refused_status()
                    docs.append({"name": pool.name, "status": status})
                    worst = max(worst, EXIT_BLOCKED)
                    continue
                for _ in range(max(1, args.max_passes)):
                    snapshot = _take_lock(
                        lock, cloud, pool.spec, neighbours[pool.name], cloud.snapshot(), args, pool.name
                    )
                    if snapshot is None:
                        status = _waiting_status(status)
                        print(f"{pool.name}: gave up waiting after {args.wait:.0f} s", file=sys.stderr)
                        break
                    report = reconciler.reconcile(
                        pool.spec,
                        on_report=progress.update,
                        snapshot=snapshot,
                        neighbours=neighbours[pool.name],
                    )
                    status = wire(build_status(report, now=time.time(), previous=status))
                    attention |= bool(report.needs_attention)
                    converged = report.converged
                    if report.stopped is not None:
                        print(f"{pool.name}: stopped: {report.stopped}", file=sys.stderr)
                        break
                    if converged or report.paused or report.dry_run or report.breaker is not None:
                        break
                    progressed = any(
                        r.outcome in (Outcome.MOVED, Outcome.ROLLED_BACK) for r in report.results
                    )
                    if not progressed:
                        break
                progress.done(status)
                docs.append({"name": pool.name, "status": status})
                code = EXIT_CONVERGED if converged and not attention else EXIT_BLOCKED
                worst = max(worst, code)
        finally:
            for lock in locks.values():
                lock.release()
    print(_render(docs, args.output))
    return worst


def _confirmed(pool, cloud, neighbours, args) -> bool:
    """On a terminal, ask before a run that would move more than ASK_ABOVE hosts (`--yes` skips
    it). Scripts (no terminal) are never asked: their guard rails are the spec's policy."""
    if args.yes or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return True
    from .planner import plan

    moves = plan(pool.spec, cloud.snapshot(), all_moves=True, neighbours=neighbours).moves
    if len(moves) <= ASK_ABOVE or pool.spec.paused or pool.spec.dry_run:
        return True
    into: dict[str, int] = {}
    for move in moves:
        into[move.target] = into.get(move.target, 0) + 1
    where = ", ".join(f"{count} into {target}" for target, count in sorted(into.items()))
    sys.stderr.write(
        f"{pool.name}: this would move {len(moves)} hosts on cloud {_cloud_of(pool, args)!r} ({where}). "
        "Go on? [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _refused_status() -> dict:
    return _verdict_status(
        "NotConfirmed", "not confirmed at the prompt; nothing moved (pass --yes to skip the question)"
    )


def _waiting_status(previous: dict | None) -> dict:
    return _verdict_status(
        "OtherProcessMoving", "another gpupool process is moving hosts on this cloud; nothing moved", previous
    )


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes too, so that `-v` works anywhere on the line."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log each Nova call's retries and steps",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpupool", description="Declarative Nova host-aggregate pools.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each Nova call's retries and steps")
    parser.add_argument("--version", action="version", version=f"gpupool {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_plan(subparsers)
    _add_reconcile(subparsers)
    _add_run(subparsers)
    _add_stop(subparsers)
    _add_crd(subparsers)
    _add_sim(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "check", None) is not None:
        args.check(args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # keystoneauth warns about version discovery before our own error says it better.
        logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    from .errors import CloudError
    from .redact import guard_root_handlers

    guard_root_handlers()  # no URL credential or token reaches a log line, whoever logs it

    try:
        return int(args.handler(args) or 0)
    except (UserError, CloudError) as exc:
        for line in str(exc).splitlines() or [""]:
            print(f"gpupool {args.command}: error: {line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"gpupool {args.command}: interrupted; moves in flight resume on the next run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
