"""``critsym report MODULE:FACTORY --input-shape 8,16 [--vocab N] [--eval] [--out fig.png]``:
theory beside the measured APJN of one torch model at its current initialization
(:func:`critsym.report`); ``--vocab`` draws integer token ids for models that start with an
embedding."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import CritsymError
from .paths import check_output_file


class ModelSpecError(CritsymError, ValueError):
    """A ``MODULE:FACTORY`` that does not name an importable model."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="criticality report of a torch model (theory vs measured APJN)",
        description="Import a torch model from MODULE:FACTORY (a dotted module or a .py file, "
        "and a function returning an nn.Module, or an nn.Module), analyse its repeating body, "
        "measure its APJN on a Gaussian input batch of --input-shape, print theory beside "
        "measurement, the phase and the critical initialization, and draw J^{0,l} vs l.")
    p.add_argument("model", metavar="MODULE:FACTORY",
                   help="e.g. mymodels:make_mlp or path/to/models.py:make_mlp")
    p.add_argument("--input-shape", required=True, metavar="B,D,...",
                   help="shape of the input batch, batch first (e.g. 64,128)")
    p.add_argument("--out", default=None, help="figure file (.png, .pdf, .svg)")
    p.add_argument("--seed", type=int, default=0,
                   help="torch.manual_seed before building the model; the input batch and the "
                   "probes come from their own streams derived from it")
    p.add_argument("--n-probes", type=int, default=16, help="Hutchinson probes per example")
    p.add_argument("--vocab", type=int, default=None, metavar="N",
                   help="draw the input as integer token ids in [0, N) of --input-shape (a "
                   "model that starts with a token embedding, e.g. GPT-2, BERT, Llama)")
    p.add_argument("--eval", action="store_true",
                   help="put the model in evaluation mode first (dropout off)")
    p.set_defaults(run=run, parser=p)
    return p


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8,16"`` → (8, 16): positive integers, batch first."""
    try:
        shape = tuple(int(s) for s in text.replace(" ", "").split(","))
    except ValueError:
        raise ModelSpecError(f"--input-shape {text!r}: give positive integers separated by "
                             "commas, batch first, e.g. 64,128") from None
    if len(shape) < 2 or min(shape) < 1:
        raise ModelSpecError(f"--input-shape {text!r}: give at least two positive sizes "
                             "(batch, features), e.g. 64,128")
    return shape


def _module(name: str):
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ModelSpecError(f"model file {name!r} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ModelSpecError(f"cannot import module {name!r}: {e}") from None


def load_model(spec: str):
    """The ``nn.Module`` named by ``MODULE:FACTORY`` (the factory called with no arguments)."""
    from torch import nn

    if spec.count(":") != 1 or not all(spec.split(":")):
        raise ModelSpecError(f"model {spec!r}: write MODULE:FACTORY, e.g. mymodels:make_mlp")
    mod_name, attr = spec.split(":")
    mod = _module(mod_name)
    if not hasattr(mod, attr):
        raise ModelSpecError(f"module {mod_name!r} has no attribute {attr!r}")
    obj = getattr(mod, attr)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise ModelSpecError(f"{spec}: is neither an nn.Module nor a function returning one")
        try:
            obj = obj()
        except CritsymError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's factory: report it on one line
            raise ModelSpecError(f"{spec}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(obj, nn.Module):
        raise ModelSpecError(f"{spec}() returned {type(obj).__name__}, not an nn.Module")
    return obj


#: spawn key of the input stream: the input is not drawn from the stream that
#: ``torch.manual_seed(seed)`` gives the model's weights
INPUT_STREAM = 0x1A9C7


def input_seed(seed: int) -> int:
    """The seed of the input batch's generator: a hash of (``seed``, :data:`INPUT_STREAM`)."""
    import numpy as np

    state = np.random.SeedSequence([int(seed), INPUT_STREAM]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def run(args) -> int:
    shape = parse_shape(args.input_shape)
    if args.n_probes < 1:
        args.parser.error(f"--n-probes {args.n_probes}: give at least 1")
    if args.seed < 0:
        args.parser.error(f"--seed {args.seed}: give an integer >= 0")
    if args.vocab is not None and args.vocab < 1:
        args.parser.error(f"--vocab {args.vocab}: give a vocabulary size >= 1")
    if args.out is not None:
        check_output_file(args.out)

    import torch

    from ..report import report

    torch.manual_seed(args.seed)
    model = load_model(args.model)
    try:
        dtype = next(model.parameters()).dtype
    except StopIteration:
        dtype = torch.get_default_dtype()
    if args.eval:
        model.eval()
    gen = torch.Generator().manual_seed(input_seed(args.seed))
    if args.vocab is not None:
        x = torch.randint(0, args.vocab, shape, generator=gen)
    else:
        x = torch.randn(shape, generator=gen, dtype=dtype)
    rep = report(model, x, n_probes=args.n_probes, seed=args.seed)
    print(rep)
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        fig = rep.plot()
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return 0
