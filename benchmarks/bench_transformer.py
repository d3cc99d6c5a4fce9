"""APJN of a transformer stack (``critsym.apjn``) vs a plain forward pass of the same model.

    PYTHONPATH=. python benchmarks/bench_transformer.py [--quick] [--threads 1]

The model: a ViT-like ``nn.TransformerEncoder`` (pre-LN, ``norm_first=True``; 17 tokens, width
256, 8 heads, MLP 4× with ReLU, 10 blocks; eval mode, dropout 0), a batch of 8 token sequences.
Timed in the same run (best of repeats): (a) its plain forward pass (``torch.no_grad``, torch's
default attention kernels), (b) ``cs.apjn`` J^{0,l} for every block output l in its default
forward mode with P = 1 and P = 8 Gaussian probes (the probes folded into the batch; every pass
runs torch's math attention kernel, which has a forward-mode rule), (c) the same with the
cross-token overlap k (``token_axis=1``), (d) reverse mode (J^{l,10} for every l, P = 8).
Ratios to (a), reported without a goal: forward mode with P probes runs one shape-checking
pass of the batch and one dual-tensor pass of P copies of it (primal and tangent), so about
1 + 2P forward passes at best; the math kernel and the generic forward-mode rules of
``nn.MultiheadAttention``'s reshapes cost more than that (measured numbers in
docs/transformer_monte_carlo.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

import critsym as cs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, best, save  # noqa: E402


def vit_stack(width: int, heads: int, depth: int, dtype) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="relu",
                                       batch_first=True, norm_first=True, dtype=dtype)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False).eval()


def main(argv=None) -> list[Row]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="4 blocks, width 128")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dt = getattr(torch, a.dtype)
    tokens, batch = 17, 8
    width, heads, depth = (128, 4, 4) if a.quick else (256, 8, 10)
    model = vit_stack(width, heads, depth, dt)
    x = torch.randn(batch, tokens, width, generator=torch.Generator().manual_seed(1), dtype=dt)
    layers = [f"layers.{i}" for i in range(depth)]
    reps = 3 if a.quick else 5

    def forward():
        with torch.no_grad():
            model(x)

    t_fwd = best(forward, reps)
    t1 = best(lambda: cs.apjn(model, x, layers, n_probes=1, progress=False), reps)
    t8 = best(lambda: cs.apjn(model, x, layers, n_probes=8, progress=False), reps)
    t8k = best(lambda: cs.apjn(model, x, layers, n_probes=8, token_axis=1, progress=False),
               reps)
    tv = best(lambda: cs.apjn(model, x, layers, mode="vjp", n_probes=8, progress=False), reps)
    res = cs.apjn(model, x, layers, n_probes=8, token_axis=1, progress=False)
    case = f"[{a.dtype}] ViT-like encoder, {depth} blocks, {tokens}x{width}, batch {batch}"
    base = "plain forward"
    rows = [Row("transformer", f"{case}: APJN all l, 1 probe", t1, base, t_fwd),
            Row("transformer", "APJN all l, 8 probes", t8, base, t_fwd),
            Row("transformer", "APJN + k (token_axis), 8 probes", t8k, base, t_fwd),
            Row("transformer", "APJN reverse mode (to the last block), 8 probes", tv, base,
                t_fwd)]
    print(f"\n== transformer APJN ({case})")
    for r in rows:
        print(r.line())
    print(f"  J^(0,{depth - 1}) = {res.J[-1]:.4g} ± {res.J_se[-1]:.2g}, "
          f"k = {res.k[-1]:.4g} ± {res.k_se[-1]:.2g} (8 probes x {batch} inputs)")
    save("transformer", rows, {"J": res.J.tolist(), "J_se": res.J_se.tolist(),
                               "k": res.k.tolist(), "k_se": res.k_se.tolist()})
    return rows


if __name__ == "__main__":
    main()
