"""``import critsym`` (and the command line's ``--help``) load neither torch, nor matplotlib, nor
scipy.optimize; the lazily resolved public names and subpackages are still attributes."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "matplotlib", "scipy.optimize")


def _loaded(code: str) -> list[str]:
    probe = (code + "\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_loads_no_heavy_module():
    assert _loaded("import critsym") == []


def test_derive_and_run_load_no_heavy_module():
    assert _loaded("import critsym as cs\n"
                   "cs.derive(cs.mlp_block('tanh')).run(3, K0=1.0, sigma_w=1.2, sigma_b=0.1)") == []


def test_cli_help_loads_no_heavy_module():
    code = ("import sys, contextlib, io\nsys.argv = ['critsym', '--help']\nimport critsym.cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    critsym.cli.main()")
    assert _loaded(code) == []


def test_lazy_names_resolve():
    import critsym as cs

    for name in cs.__all__:
        assert getattr(cs, name) is not None, name
    for sub in ("shaping", "finite_width", "parameterization"):
        assert getattr(cs, sub).__name__ == f"critsym.{sub}"
    assert cs.simulate.__module__ == "critsym.torch.simulate"


def test_old_feature_map_names_are_the_new_objects():
    import critsym as cs
    from critsym.torch import feature_maps

    assert cs.simulate_shaped is cs.simulate_maps is feature_maps.simulate_maps
    assert cs.ShapedResult is cs.MapsResult is feature_maps.MapsResult
    assert feature_maps.build_shaped is feature_maps.build_maps
