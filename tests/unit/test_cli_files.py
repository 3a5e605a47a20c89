"""`gpupool plan|reconcile -f`: every file given is read (-f as often as wanted), a folder's
.yaml/.yml/.json files in any case are read and anything else in it is named in a note, a name
defined in two files names both files and lines, and a file that is not UTF-8 says so with the line
and what to do. All of it before any cloud is contacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpupool import cli


def _spec(name: str, spot: int = 1) -> dict:
    return {
        "apiVersion": "gpupool.io/v1alpha1",
        "kind": "GpuHostPool",
        "metadata": {"name": name},
        "spec": {"gpuType": "L40", "cloud": "sim", "pools": {"spot": {"hosts": spot}}},
    }


def _write(path: Path, *docs: dict) -> Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def _error_lines(capsys, argv: list[str]) -> list[str]:
    assert cli.main(argv) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()


def _line_of(path: Path, text: str, nth: int = 1) -> int:
    """The 1-based line of the nth line of `path` that holds `text`."""
    found = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return found[nth - 1]


def test_every_f_is_read_in_order(tmp_path):
    a = _write(tmp_path / "a.yaml", _spec("l40"))
    b = _write(tmp_path / "b.yaml", _spec("h100"))
    folder = tmp_path / "more"
    folder.mkdir()
    _write(folder / "c.yaml", _spec("a100"))
    pools = cli._load_pools([str(a), str(b), str(folder)])
    assert [p.name for p in pools] == ["l40", "h100", "a100"]


def test_repeated_f_on_the_command_line(tmp_path):
    args = cli.build_parser().parse_args(["plan", "-f", "a.yaml", "-f", "dir/", "--filename", "b.yml"])
    assert args.filename == ["a.yaml", "dir/", "b.yml"]
    args = cli.build_parser().parse_args(["reconcile", "-f", "a.yaml", "-f", "b.yaml"])
    assert args.filename == ["a.yaml", "b.yaml"]


def test_the_same_file_twice_is_read_once(tmp_path):
    a = _write(tmp_path / "a.yaml", _spec("l40"))
    assert [p.name for p in cli._load_pools([str(a), str(tmp_path)])] == ["l40"]


def test_a_folder_reads_json_and_any_case_and_names_what_it_skips(tmp_path, capsys):
    _write(tmp_path / "l40.yaml", _spec("l40"))
    (tmp_path / "h100.json").write_text(json.dumps(_spec("h100"), indent="\t"))  # tabs: not YAML
    _write(tmp_path / "a100.YAML", _spec("a100"))
    _write(tmp_path / "t4.Yml", _spec("t4"))
    (tmp_path / "README.md").write_text("pools\n")
    (tmp_path / ".gitkeep").write_text("")
    (tmp_path / "old").mkdir()
    pools = cli._load_pools([str(tmp_path)], "plan")
    assert sorted(p.name for p in pools) == ["a100", "h100", "l40", "t4"]
    assert capsys.readouterr().err.splitlines() == [
        f"gpupool plan: note: {tmp_path / 'README.md'}: skipped: not .yaml, .yml or .json",
        f"gpupool plan: note: {tmp_path / 'old'}: skipped: a folder (not read recursively)",
    ]


def test_a_json_file_is_checked_like_a_yaml_one(tmp_path, capsys):
    bad = _spec("h100", spot=-5)
    (tmp_path / "h100.json").write_text(json.dumps(bad, indent="\t"))
    line = _line_of(tmp_path / "h100.json", '"hosts": -5')
    lines = _error_lines(capsys, ["plan", "-f", str(tmp_path)])
    assert lines == [
        f"gpupool plan: error: {tmp_path / 'h100.json'}:{line}: spec.pools.spot.hosts: must be >= 0 (got -5)"
    ]
    (tmp_path / "h100.json").write_text('{"apiVersion": "gpupool.io/v1alpha1",\n "kind": }\n')
    lines = _error_lines(capsys, ["plan", "-f", str(tmp_path / "h100.json")])
    assert lines == [
        f"gpupool plan: error: {tmp_path / 'h100.json'}:2: not valid JSON: Expecting value (column 10)"
    ]


def test_a_folder_without_spec_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    lines = _error_lines(capsys, ["plan", "-f", str(tmp_path)])
    assert lines[-1] == f"gpupool plan: error: {tmp_path}: no .yaml, .yml or .json files in this folder"


def test_a_name_in_two_files_names_both_files_and_lines(tmp_path, capsys):
    _write(tmp_path / "a.yaml", _spec("l40"))
    (tmp_path / "b.yaml").write_text(
        "# the same pool again\n" + yaml.safe_dump_all([_spec("t4"), _spec("l40")])
    )
    lines = _error_lines(capsys, ["plan", "-f", str(tmp_path)])
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    in_a, in_b = _line_of(a, "name: l40"), _line_of(b, "name: l40")
    assert (in_a, in_b) == (4, 16)
    assert lines == [
        f"gpupool plan: error: {b}:{in_b}: metadata.name: GpuHostPool 'l40' is defined in 2 places "
        f"({a}:{in_a}, {b}:{in_b}); keep one (or rename one)"
    ]


def test_a_file_that_is_not_utf8_says_where_and_what_to_do(tmp_path, capsys):
    text = yaml.safe_dump(_spec("l40"), sort_keys=False).replace("name: l40", "name: l40\n  # caf\xe9")
    (tmp_path / "latin1.yaml").write_bytes(text.encode("latin-1"))
    assert text.splitlines()[4] == "  # caf\xe9"
    lines = _error_lines(capsys, ["reconcile", "-f", str(tmp_path / "latin1.yaml")])
    assert lines == [
        f"gpupool reconcile: error: {tmp_path / 'latin1.yaml'}:5: not UTF-8 (byte 0xe9 in line 5): "
        "save the file as UTF-8"
    ]


def test_a_utf16_file_says_so(tmp_path, capsys):
    (tmp_path / "u16.yaml").write_bytes(yaml.safe_dump(_spec("l40")).encode("utf-16"))
    lines = _error_lines(capsys, ["plan", "-f", str(tmp_path / "u16.yaml")])
    assert lines == [
        f"gpupool plan: error: {tmp_path / 'u16.yaml'}:1: UTF-16 text, not UTF-8: save the file as UTF-8"
    ]


def test_a_utf8_bom_is_fine(tmp_path):
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(_spec("l40")).encode())
    assert [p.name for p in cli._load_pools([str(tmp_path / "bom.yaml")])] == ["l40"]


@pytest.mark.parametrize("missing", ["nope.yaml", "nope/"])
def test_a_missing_path(tmp_path, capsys, missing):
    a = _write(tmp_path / "a.yaml", _spec("l40"))
    lines = _error_lines(capsys, ["plan", "-f", str(a), "-f", str(tmp_path / missing)])
    assert lines == [f"gpupool plan: error: {tmp_path / missing}: no such file or folder"]
