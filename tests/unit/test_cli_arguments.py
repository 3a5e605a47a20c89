"""`gpupool run` / `reconcile` arguments: a value that makes no sense is one usage line (exit 64)
naming the flag and what it accepts; a probe port the operator cannot listen on stops it at start
(exit 1, one line). Never a traceback, never an operator silently running without what it was
asked for (a probe, the kill switch)."""

from __future__ import annotations

import socket

import pytest

from gpupool import cli, process


def _usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "usage error" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--metrics", "abc"], "argument --metrics: 'abc' is not HOST:PORT with a port from 1 to 65535"),
        (["--metrics", "127.0.0.1:99999"], "argument --metrics: '127.0.0.1:99999' is not HOST:PORT"),
        (["--metrics", "127.0.0.1:0"], "argument --metrics: '127.0.0.1:0' is not HOST:PORT"),
        (["--liveness", "notaurl"], "argument --liveness: 'notaurl' is not an http://HOST:PORT/PATH URL"),
        (["--liveness", "https://0.0.0.0:8080/healthz"], "kopf serves plain http only"),
        (["--liveness", "http://0.0.0.0:99999/healthz"], "with a port from 1 to 65535"),
        (["--liveness", "http://0.0.0.0:8080"], "is not an http://HOST:PORT/PATH URL"),
        (["--interval", "-1"], "argument --interval: must be at least 1 (seconds), got -1"),
        (["--interval", "0"], "argument --interval: must be at least 1 (seconds), got 0"),
        (["--interval", "nan"], "argument --interval: must be at least 1 (seconds), got nan"),
        (["--interval", "soon"], "argument --interval: must be a number, at least 1 (seconds), got 'soon'"),
        (["--lock-ttl", "0"], "argument --lock-ttl: must be at least 10 (seconds), got 0"),
        (["--watchdog", "-5"], "argument --watchdog: must be at least 10 (seconds), got -5"),
        (["--shutdown-grace", "-1"], "argument --shutdown-grace: must be at least 0 (seconds), got -1"),
        (["--peering-lifetime", "0"], "argument --peering-lifetime: must be at least 3 (whole seconds)"),
        (["--peering-lifetime", "2.5"], "argument --peering-lifetime: must be a number, at least 3"),
        (["--gpu-usage-interval", "-3"], "must be at least 1 (seconds), or 0 (never), got -3"),
        (["--kill-switch", "ns/"], "argument --kill-switch: 'ns/' is not NAMESPACE/NAME or NAME"),
        (["--kill-switch", "/gpupool-stop"], "argument --kill-switch: '/gpupool-stop' is not"),
        (["--kill-switch", "a/b/c"], "argument --kill-switch: 'a/b/c' is not"),
        (["--kill-switch", "Gpupool_Stop"], "argument --kill-switch: 'Gpupool_Stop' is not"),
        (["--kill-switch", ""], "argument --kill-switch: '' is not"),
        (
            ["--peering-lifetime", "15", "--watchdog", "12"],
            "argument --watchdog: must be more than --peering-lifetime (15 s), got 12",
        ),
    ],
)
def test_run_refuses_values_that_make_no_sense_in_one_line(capsys, argv, says):
    assert says in _usage_error(capsys, ["run", "--standalone", *argv])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--wait", "-1"], "argument --wait: must be at least 0 (seconds), got -1"),
        (["--max-passes", "0"], "argument --max-passes: must be at least 1 (passes), got 0"),
    ],
)
def test_reconcile_refuses_values_that_make_no_sense_in_one_line(capsys, argv, says):
    assert says in _usage_error(capsys, ["reconcile", "-f", "x.yaml", *argv])


def _run_args(argv: list[str]):
    args = cli.build_parser().parse_args(["run", *argv])
    args.check(args)
    return args


def test_sensible_values_are_taken_as_given():
    args = _run_args(
        [
            "--interval", "1", "--lock-ttl", "10", "--watchdog", "20", "--peering-lifetime", "4",
            "--shutdown-grace", "0", "--gpu-usage-interval", "0", "--metrics", ":9464",
            "--liveness", "http://0.0.0.0:8080/healthz",
        ]
    )  # fmt: skip
    assert (args.interval, args.lock_ttl, args.watchdog, args.peering_lifetime) == (1, 10, 20, 4)
    assert (args.shutdown_grace, args.gpu_usage_interval) == (0, 0)
    assert args.metrics == ":9464" and args.liveness == "http://0.0.0.0:8080/healthz"
    assert _run_args(["--metrics", "[::1]:9464"]).metrics == "::1:9464"  # metrics.serve: rpartition(":")


def test_kill_switch_name_alone_is_in_the_operators_namespace(monkeypatch):
    """`--kill-switch NAME` used to turn the kill switch off without a word (no namespace)."""
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    assert _run_args([]).kill_switch == ("ops", "gpupool-stop")
    assert _run_args(["--kill-switch", "halt"]).kill_switch == ("ops", "halt")
    assert _run_args(["--kill-switch", "other/halt"]).kill_switch == ("other", "halt")
    monkeypatch.delenv("POD_NAMESPACE")
    assert _run_args(["--kill-switch", "halt"]).kill_switch == ("gpupool-system", "halt")
    assert _run_args([]).kill_switch == ("gpupool-system", "gpupool-stop")


def test_help_says_what_a_name_alone_means(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "NAME alone is in the operator's namespace, $POD_NAMESPACE, else gpupool-system" in text


@pytest.fixture
def port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("flag", ["--metrics", "--liveness"])
def test_a_port_in_use_stops_the_operator_at_start_in_one_line(capsys, port_in_use, flag):
    value = f"127.0.0.1:{port_in_use}" if flag == "--metrics" else f"http://127.0.0.1:{port_in_use}/healthz"
    assert cli.main(["run", "--standalone", flag, value]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"gpupool run: error: {flag} {value}: cannot listen there (Address already in use): another "
        "process listens on that port: stop it or pick another port"
    ]


def test_an_address_that_is_not_this_hosts_stops_the_operator(capsys):
    with pytest.raises(process.ListenError, match=r"--liveness http://192\.0\.2\.1:8080/h: cannot listen"):
        process.check_liveness("http://192.0.2.1:8080/h")  # TEST-NET-1: never this host's
    with pytest.raises(process.ListenError, match="use an address of this host"):
        process.serve_metrics("192.0.2.1:9464")


def test_a_free_liveness_port_passes_the_check():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    process.check_liveness(f"http://127.0.0.1:{free}/healthz")
