r"""Sums of branches: :class:`Parallel` (Σ_k branch_k(h)) and :class:`Residual` (μh + branch(h)).

Fold rule (:func:`sum_branches`).  Every branch folds the same input state; the output is the
weighted sum of the branch expressions.  At initialization the last weights of distinct
branches are independent, so when each branch ends in a Linear layer the sum of independent
zero-mean Gaussian variables is merged into one: K' = Σ_k c_k² K_k, K'_12 = Σ_k c_k² K_12,k,
χ_J = Σ_k c_k² χ_k (cross terms vanish).  Branches that do not end in a Linear stay an
expression whose expectation is taken of the whole.  The layer statistics each branch defined
(LayerNorm means and standard deviations) are all kept, so two arms that each normalise remain
fully resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import ArchitectureError, SimulationError
from ..symbols import as_hyper
from ..symbols import mu as _mu
from .base import Op, as_op


def sum_branches(s, terms):
    """Σ_k c_k · signal_k for ``terms`` = [(c_k, signal_k), …], all folded from the state ``s``;
    the branch states are merged (variables and layer statistics of every branch)."""
    (c0, out), *rest = terms
    scaled = out.map(lambda e, side: c0 * e) if c0 != 1 else out
    for c, other in rest:
        scaled = scaled.combine(other, 1, c)
    return scaled.canonical()


@dataclass(frozen=True, init=False)
class Parallel(Op):
    r"""h ↦ Σ_k branch_k(h): the sum of its branches (e.g. attention's arms, two-path blocks).

    Fold rule: :func:`sum_branches`; ``Parallel(Act("identity"), b)`` is ``Residual(b, 1)``.
    """

    branches: tuple[Op, ...]
    positional_children = "branches"
    latex_name = r"\sum"
    torch_types = ("critsym.torch.modules.ParallelSum",)

    def __init__(self, *branches: Op):
        if len(branches) == 1 and isinstance(branches[0], (tuple, list)):
            branches = tuple(branches[0])
        if len(branches) < 1:
            raise ArchitectureError("Parallel(*branches) needs at least one branch")
        object.__setattr__(self, "branches",
                           tuple(as_op(b, "Parallel branch") for b in branches))

    def __repr__(self) -> str:
        return "Parallel(" + ", ".join(repr(b) for b in self.branches) + ")"

    def children(self):
        return self.branches

    def apply(self, s):
        return sum_branches(s, [(1, b.apply(s)) for b in self.branches])

    def latex(self) -> str:
        return " + ".join(rf"\left[{b.latex()}\right]" for b in self.branches)

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """Σ_k branch_k(x); every branch must map the input shape to the same output shape."""
        from ..torch.modules import ParallelSum

        mods, outs = [], []
        for b in self.branches:
            m, o = b.to_torch(ctx, shape)
            mods.append(m)
            outs.append(tuple(o))
        if len(set(outs)) != 1:
            raise SimulationError(f"the branches of {self!r} give shapes {outs}; a sum needs "
                                  "equal shapes")
        return ParallelSum(mods), outs[0]

    def export(self, ctx, fan: int):
        from ..torch.modules import ParallelSum

        mods, outs = [], []
        for b in self.branches:
            m, f = b.export(ctx, fan)
            mods.append(m)
            outs.append(f)
        if len(set(outs)) != 1:
            raise SimulationError(f"the branches of {self!r} give {outs} features; a sum needs "
                                  "equal widths")
        return ParallelSum(mods), outs[0]

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        from .activation import Act

        bs = [reader.map(b, reader.join(path, f"branches.{i}"))
              for i, b in enumerate(module.branches)]
        return Parallel(*(b if b is not None else Act("identity") for b in bs))

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example
        from .linear import Linear
        from .norm import LayerNorm

        hp = dict(sigma_w=1.1, sigma_b=0.2)
        return (Example(Parallel(LayerNorm() >> Act("tanh") >> Linear(),
                                 Act("relu") >> LayerNorm() >> Linear()), hp,
                        name="Parallel(LN-pre tanh, LN-post relu)"),
                Example(Parallel(Act("identity"), Act("erf") >> Linear()), hp,
                        name="Parallel(identity, erf)"))


@dataclass(frozen=True, init=False)
class Residual(Op):
    r"""h ↦ μ·h + branch(h): the two-branch sum with the identity as one branch.

    At initialization the branch's last weights are independent of h, so when the branch ends in
    a Linear layer K' = μ²K + K_branch and χ_J = μ² + χ_branch (cross terms vanish); a branch
    that does not end in a Linear is summed as an expression and the expectation is taken of
    the whole (the fold merges the sum only where it is affine in Gaussian variables).  The same
    merge as :class:`Parallel` (:func:`sum_branches` with weights μ and 1).
    """

    branch: Op
    mu: sp.Expr
    hyper_fields = ("mu",)
    latex_name = r"\mathrm{Res}"
    torch_types = ("critsym.torch.modules.ResidualModule", "critsym.torch.modules.ResidualSum")

    def __init__(self, branch: Op, mu: object = _mu):
        object.__setattr__(self, "branch", as_op(branch, "Residual branch"))
        object.__setattr__(self, "mu", as_hyper(mu, what="mu"))

    def children(self):
        return (self.branch,)

    def apply(self, s):
        return sum_branches(s, [(self.mu, s), (1, self.branch.apply(s))])

    def latex(self) -> str:
        return rf"{sp.latex(self.mu)}\,h + \left[{self.branch.latex()}\right]"

    def to_torch(self, ctx, shape: tuple[int, ...]):
        """μ·x + branch(x); the branch must keep the shape."""
        from ..torch.modules import ResidualSum

        branch, out = self.branch.to_torch(ctx, shape)
        if tuple(out) != tuple(shape):
            raise SimulationError(
                f"residual branch maps shape {shape} to {out}; a residual sum needs equal "
                f"shapes (set the width equal to the input width)"
            )
        return ResidualSum(branch, ctx.value(self.mu, "Residual mu")), shape

    def export(self, ctx, fan: int):
        from ..torch.modules import ResidualModule

        b, f2 = self.branch.export(ctx, fan)
        return ResidualModule(b, ctx.value(self.mu, "Residual mu")), f2

    @classmethod
    def read_torch(cls, module, reader, path: str) -> Op:
        return cls._read(module.branch, float(module.mu), reader, path)

    @classmethod
    def _read(cls, branch, mu, reader, path):
        from .activation import Act

        reader.mus[reader.label(path)] = mu
        b = reader.map(branch, reader.join(path, "branch"))
        return Residual(b if b is not None else Act("identity"), mu)

    @classmethod
    def probe_torch(cls, module, reader, path: str):
        """A module with a child ``branch`` and a number ``mu`` whose ``forward`` cannot be
        captured as a graph (residual sums written in ``forward`` are read from the graph,
        :mod:`critsym.interop.capture`)."""
        import numbers

        from torch import nn

        branch, mu = getattr(module, "branch", None), getattr(module, "mu", None)
        if isinstance(branch, nn.Module) and isinstance(mu, numbers.Real):
            return cls._read(branch, float(mu), reader, path)
        return None

    @classmethod
    def examples(cls):
        from .activation import Act
        from .contract import Example, block_constructor
        from .linear import Linear

        mlp_block = block_constructor("mlp_block")  # registered by ops.blocks
        return (Example(Residual(Act("tanh") >> Linear()), dict(sigma_w=1.1, sigma_b=0.1,
                                                                mu=0.9),
                        name="Residual(tanh)"),
                Example(mlp_block("relu", "pre", True), dict(sigma_w=1.3, sigma_b=0.2, mu=1),
                        name="Residual(LN-pre relu)"))
