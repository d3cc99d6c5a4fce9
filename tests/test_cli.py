"""The ``critsym`` command: subcommand registry, one-line errors with exit status 2, output
paths checked before any computation, the old ``python -m`` entry points as thin wrappers."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import critsym as cs
from critsym import cli
from critsym.cli import paths

ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("critsym: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_every_registered_subcommand_is_listed(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("derive", "demo", "phase", "repro", "derivations", "report", "sweep"):
        assert f"\n    {name}" in out
    assert len(cli.SUBCOMMANDS) + len(cli.LAZY_SUBCOMMANDS) == 7


def test_a_new_subcommand_plugs_in_by_registering(monkeypatch, capsys):
    plugin = types.ModuleType("critsym_test_plugin")

    def add_parser(subparsers):
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(run=lambda a: print(f"hello {a.name}") or 0)
        return p

    def add_failing_parser(subparsers):  # sets ``func``, the argparse docs' convention
        p = subparsers.add_parser("fail")
        p.set_defaults(func=lambda a: (_ for _ in ()).throw(cs.CritsymError("no\nluck")))
        return p

    plugin.add_parser = add_parser
    other = types.ModuleType("critsym_test_plugin2")
    other.add_parser = add_failing_parser
    monkeypatch.setitem(sys.modules, "critsym_test_plugin", plugin)
    monkeypatch.setitem(sys.modules, "critsym_test_plugin2", other)
    monkeypatch.setattr(cli, "SUBCOMMANDS",
                        [*cli.SUBCOMMANDS, "critsym_test_plugin", "critsym_test_plugin2"])
    assert cli.main(["hello", "--name", "critsym"]) == 0
    assert capsys.readouterr().out == "hello critsym\n"
    assert cli.run_subcommand("hello", prog="hello-prog", argv=[]) == 0
    assert capsys.readouterr().out == "hello world\n"
    assert cli.main(["fail"]) == cli.ERROR_STATUS
    assert capsys.readouterr().err == "critsym: error: no luck\n"


def test_derive_prints_the_recursions_of_a_json_file(tmp_path, capsys):
    arch = cs.mlp_block("erf")
    f = tmp_path / "arch.json"
    f.write_text(arch.to_json())
    assert cli.main(["derive", str(f)]) == 0
    th = cs.derive(arch)
    assert capsys.readouterr().out == f"F = {th.F}\nchi_J = {th.chi}\nG = {th.G}\n"
    assert cli.main(["derive", str(f), "--latex"]) == 0
    assert capsys.readouterr().out == th.latex() + "\n"


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"op": "NoSuchOp"})])
def test_derive_of_a_missing_or_bad_file_is_a_one_line_error(tmp_path, capsys, content):
    f = tmp_path / "arch.json"
    if content is not None:
        f.write_text(content)
    assert cli.main(["derive", str(f)]) == cli.ERROR_STATUS
    msg = _one_line_error(capsys)
    assert "arch.json" in msg or "JSON" in msg or "NoSuchOp" in msg


def test_derive_of_a_directory_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["derive", str(tmp_path)]) == cli.ERROR_STATUS
    assert "directory" in _one_line_error(capsys)


def _forbid_computation(monkeypatch):
    """Make every computation the commands could start fail loudly."""
    import critsym.criticality as crit
    import critsym.derivations as derivations
    import critsym.repro as repro

    def boom(*a, **k):
        raise AssertionError("computation started before the output path was checked")

    monkeypatch.setattr(crit, "phase_grid", boom)
    monkeypatch.setattr(cs, "derive", boom)
    monkeypatch.setattr(sys.modules["critsym.derive"], "derive", boom)
    monkeypatch.setattr(repro, "run", boom)
    monkeypatch.setattr(derivations, "write", boom)


@pytest.mark.parametrize("argv", [
    ["phase", "--out", "{tmp}/missing_dir/phase.png"],
    ["phase", "--out", "{tmp}/phase.txt"],
    ["phase", "--out", "{tmp}"],
    ["repro", "ln-critical", "--out", "{tmp}/missing_dir/fig.png"],
    ["repro", "ln-critical", "--out", "{tmp}/fig.csv"],
    ["demo", "--out", "{tmp}/a_file"],
    ["derivations", "{tmp}/a_file"],
])
def test_bad_output_paths_fail_before_any_computation(tmp_path, monkeypatch, capsys, argv):
    (tmp_path / "a_file").write_text("")
    _forbid_computation(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli.main(argv) == cli.ERROR_STATUS
    assert "cannot" in _one_line_error(capsys)


def test_check_output_file_accepts_a_writable_figure_path(tmp_path):
    assert paths.check_output_file(tmp_path / "x.PDF") == tmp_path / "x.PDF"
    assert paths.check_output_file("relative.png") == Path("relative.png")


def test_phase_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "p.png")
    assert cli.main(["phase", "--act", "no_such_act", "--n", "4", "--out", out]) == 2
    assert "no_such_act" in _one_line_error(capsys)
    for argv in (["--block", "mixer", "--n", "4"], ["--n", "1"]):
        with pytest.raises(SystemExit) as e:  # usage errors, reported by argparse
            cli.main(["phase", *argv, "--out", out])
        assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not Path(out).exists()


def test_phase_writes_the_figure(tmp_path, capsys):
    out = tmp_path / "erf.png"
    assert cli.main(["phase", "--act", "erf", "--n", "8", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "phase fractions" in capsys.readouterr().out


def test_error_line_joins_a_multi_line_message():
    assert cli.error_line(cs.CritsymError("first\n  second")) == "critsym: error: first second"


def test_run_subcommand_uses_the_program_name(capsys):
    with pytest.raises(SystemExit):
        cli.run_subcommand("phase", prog="python -m critsym.criticality", argv=["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m critsym.criticality [-h]")


def test_module_entry_points_give_one_line_errors(tmp_path):
    r = _python("-m", "critsym.criticality", "--act", "no_such_act", "--n", "4",
                "--out", "p.png", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("critsym: error: unknown activation 'no_such_act'")
    r = _python("-m", "critsym", "derive", "missing.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing.json" in r.stderr and r.stderr.count("\n") == 1


def test_derivations_help_creates_nothing(tmp_path):
    r = _python("-m", "critsym.derivations", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: python -m critsym.derivations")
    assert list(tmp_path.iterdir()) == []


HEAVY = ("torch", "matplotlib", "scipy.optimize", "scipy.integrate")


@pytest.mark.parametrize("argv", [["--help"], ["phase", "--help"], ["repro", "--help"]])
def test_help_imports_neither_torch_nor_matplotlib(tmp_path, argv):
    """``critsym --help`` (and a subcommand's help) stays fast: the package is lazy and the
    subcommand modules import numerical libraries only inside ``run``."""
    code = (
        "import sys\n"
        "from critsym.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    r = _python("-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def _subparsers(parser):
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def test_parsers_set_run():
    """Every command, and every command of a command with its own subcommands, has a ``run``
    (or ``func``) to call."""
    for name in [*_subparsers(cli.build_parser()).choices]:
        p = _subparsers(cli.build_parser(argv=[name])).choices[name]
        nested = _subparsers(p)
        for q in nested.choices.values() if nested else [p]:
            assert callable(q.get_default("run") or q.get_default("func")), name


def test_a_lazy_subcommand_is_imported_only_when_chosen(monkeypatch, capsys):
    plugin = types.ModuleType("critsym_test_lazy")
    plugin.add_parser = lambda sub: sub.add_parser("lazy").set_defaults(run=lambda a: 7)
    monkeypatch.setattr(cli, "LAZY_SUBCOMMANDS",
                        {**cli.LAZY_SUBCOMMANDS, "lazy": ("critsym_test_lazy", "a lazy one")})
    monkeypatch.delitem(sys.modules, "critsym_test_lazy", raising=False)
    with pytest.raises(SystemExit):
        cli.main(["--help"])  # lists it without importing it
    assert "a lazy one" in capsys.readouterr().out
    assert "critsym_test_lazy" not in sys.modules
    monkeypatch.setitem(sys.modules, "critsym_test_lazy", plugin)
    assert cli.main(["lazy"]) == 7


def test_sweep_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "missing" / "phase.png")
    assert cli.main(["sweep", "phase", "--out", out]) == cli.ERROR_STATUS
    assert "does not exist" in _one_line_error(capsys)
