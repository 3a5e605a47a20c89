"""The testbed's Go builds (kube-apiserver, the GitOps health harness) go into the per-machine
cache whole or not at all: a failed build leaves the last good one and no half-written entry."""

from __future__ import annotations

import json
import subprocess

import pytest

from testbed.cache import GoBuildFailed, find_go, go_build_into

MAIN_GO = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("%s") }\n'


@pytest.fixture
def module(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "go.mod").write_text("module example.com/hello\n\ngo 1.21\n")
    (src / "main.go").write_text(MAIN_GO % "first")
    return src


def build(module, dest):
    go = find_go()
    assert go, "Go is needed to build the testbed (make test builds kube-apiserver with it)"
    return go_build_into(
        dest, module, lambda out: [go, "build", "-o", str(out / "hello"), "."], lambda out: {"key": "k1"}
    )


def test_a_build_lands_whole_with_its_build_info(module, tmp_path):
    dest = tmp_path / "cache" / "hello" / "k1"
    build(module, dest)
    assert subprocess.run([dest / "hello"], capture_output=True, text=True).stdout == "first\n"
    info = json.loads((dest / "BUILD_INFO").read_text())
    assert info["key"] == "k1" and info["seconds"] >= 0 and info["built_at"].endswith("Z")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["k1"]


def test_a_failed_build_keeps_the_last_good_one_and_leaves_no_debris(module, tmp_path):
    dest = tmp_path / "cache" / "hello" / "k1"
    build(module, dest)
    (module / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(GoBuildFailed, match=r"go build failed \(1\): .* in .*src"):
        build(module, dest)
    assert subprocess.run([dest / "hello"], capture_output=True, text=True).stdout == "first\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["k1"]


def test_a_rebuild_replaces_the_entry(module, tmp_path):
    dest = tmp_path / "cache" / "hello" / "k1"
    build(module, dest)
    (module / "main.go").write_text(MAIN_GO % "second")
    build(module, dest)
    assert subprocess.run([dest / "hello"], capture_output=True, text=True).stdout == "second\n"
