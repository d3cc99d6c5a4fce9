r"""Real models in: graph capture and whole networks.

API (for :mod:`critsym.init`, :mod:`critsym.report` and users)::

    res = critsym.from_torch(model, example_input)   # an ImportResult
    res.blocks        # tuple of BodyBlock: .path, .arch (numbers), .block (symbolic where the
                      # block's layers agree), .values {"sigma_w": …, "sigma_b": …}, .theory,
                      # .width, .output (submodule name for cs.apjn, or None), .pooled,
                      # .agreement, .layers (weight-layer paths)
    res.skipped       # tuple of Skipped(part="stem"|"head", path, reason)
    res.analysed      # "blocks.0 … blocks.5 (6 blocks)"
    res.body_input    # BodyInput: K (and O_T, O_C for a rows × neurons body) as Estimates,
                      # source "example_input" or "default" (K = 1)
    res.capture       # module path -> "torch.fx" | "torch.export (fx: why)"
    res.approximations  # submodule -> what its import approximates (readers record it)
    res.network_run() # NetworkRun: K, J (J[b] = J^{0,b}, b = 0 the body input), chi, O_T, O_C, k
    res.J_theory()    # theory J^{0,b} across the body at the model's current initialization
    res.J_theory(start=i)  # J^{i,b}, b = i..L: the tangent restarted at block boundary i
    res.outputs       # [block.output …]: cs.apjn(model, x, [res.outputs[i], …]) measures J from
                      # the output of block i, which J_theory(start=i + 1) predicts
    critsym.interop.run_blocks(blocks_or_(theory, values)_pairs, K0=, O_T0=, O_C0=, J0=, k0=,
                               law0=)

ResNets with the activation after the residual sum (torchvision, Hugging Face): each block
φ(skip(x) + branch(x)) is one block (``Residual(b, μ) >> Act`` or ``Parallel(b, shortcut) >>
Act``, the projection shortcut's conv strided), and the body carries the stream's law
(:mod:`~critsym.interop.stream`): ``res.network_run().laws``, the body input's law from
``res.body_input.samples``.

Legacy single-block fields stay: ``res.block`` / ``res.n_blocks`` (the repeating unit when the
body is a stack of identical blocks), ``res.sigma_w`` / ``res.sigma_b`` (pooled over the body
when the layers agree), ``res.theory()``, ``res.critical()``, ``res.run()``.

Modules: :mod:`~critsym.interop.capture` (torch.fx / torch.export capture and the graph
walk), :mod:`~critsym.interop.network` (blocks, body, the network theory),
:mod:`~critsym.interop.stream` (post-activation residual bodies: the stream's law), the
readers of library layers by class name: :mod:`~critsym.interop.hf` (torch's and Hugging
Face's transformer layers), :mod:`~critsym.interop.tv` (torchvision's and timm's ViT and Mixer
blocks).
"""

from .network import (
    BodyBlock,
    BodyInput,
    Estimate,
    NetworkRun,
    Skipped,
    derive_block,
    run_blocks,
)

__all__ = ["BodyBlock", "BodyInput", "Estimate", "NetworkRun", "Skipped", "derive_block",
           "run_blocks"]
