"""The input stage (embeddings → q⁰, p⁰, O_T⁰): closed forms, Monte Carlo of real nn.Embedding
stacks (1/d-extrapolated, within 4 SE), and transformer blocks started from it."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

import critsym as cs
from critsym.errors import HyperparameterError
from critsym.torch.validate import extrapolate

N = 8


# ------------------------------------------------------------------ closed forms
def test_random_parts_closed_forms():
    st = cs.InputStage(N, (cs.TokenEmbedding(40, 0.7), cs.LearnedPositions(0.5),
                           cs.TokenTypes(0.3))).state
    assert st.q == pytest.approx(0.49 + 0.25 + 0.09, rel=1e-14)
    assert st.p == pytest.approx(0.49 / 40 + 0.09, rel=1e-14)  # types: all tokens of type 0
    assert st.O_T == 0.0
    probs = np.array([0.5, 0.3, 0.2])
    st = cs.InputStage(N, (cs.TokenEmbedding(3, 1.0, tuple(probs), padding_idx=0),)).state
    assert st.q == pytest.approx(0.5, rel=1e-14)  # the padding row is zero
    assert st.p == pytest.approx(0.3**2 + 0.2**2, rel=1e-14)
    st = cs.InputStage(N, (cs.TokenTypes(1.0, (0.5, 0.5)),)).state
    assert st.p == pytest.approx(0.5, rel=1e-14)


def test_sinusoidal_positions_closed_forms():
    d = 4096
    pe = cs.SinusoidalPositions(d)
    st = cs.InputStage(2, (pe,)).state
    assert st.q == pytest.approx(0.5, rel=1e-14)  # sin² + cos² over each pair of neurons
    # two positions 1 apart: (1/d) Σ_k cos(ω_k) → ½ ∫_0^1 cos(10000^{−x}) dx
    want = 0.5 * integrate.quad(lambda x: math.cos(10000.0 ** (-x)), 0, 1, epsabs=1e-13)[0]
    assert st.p == pytest.approx(want, abs=1e-3)  # a Riemann sum with step 2/d
    # per-token means: position 0 has sin = 0, cos = 1 on every pair → m_0 = 1/2
    G, m = cs.InputStage(3, (pe,)).gram()
    assert m[0] == pytest.approx(0.5, rel=1e-14)
    assert np.allclose(np.diag(G), 0.5, rtol=1e-14)


def test_layer_norm_after_the_sum():
    parts = (cs.TokenEmbedding(10, 2.0), cs.LearnedPositions(1.0))
    st = cs.InputStage(N, parts, layer_norm=True).state
    assert st.q == pytest.approx(1.0, rel=1e-14) and st.O_T == 0.0
    assert st.p == pytest.approx((4.0 / 10) / 5.0, rel=1e-14)  # p/q of the sum
    st = cs.InputStage(N, parts, layer_norm=True, eps=1.0).state
    assert st.q == pytest.approx(5.0 / 6.0, rel=1e-14)


def test_bad_input_is_refused():
    with pytest.raises(HyperparameterError, match="sum to 1"):
        cs.TokenEmbedding(3, 1.0, (0.5, 0.2, 0.2))
    with pytest.raises(HyperparameterError, match="even"):
        cs.SinusoidalPositions(7)
    with pytest.raises(HyperparameterError, match="at least one"):
        cs.InputStage(4, ())
    with pytest.raises(HyperparameterError, match="n_tokens"):
        cs.InputStage(1, (cs.LearnedPositions(1.0),))
    with pytest.raises(HyperparameterError, match="zero variance"):
        cs.InputStage(4, (cs.LearnedPositions(0.0),), layer_norm=True).initial()


def test_run_from_the_stage():
    stage = cs.InputStage(N, (cs.TokenEmbedding(50, 1.0), cs.LearnedPositions(0.5)))
    th = cs.derive(cs.transformer_block(cs.Attention(N), "relu", "pre", 1.0))
    hp = dict(sigma_v=1.0, sigma_o=1.0, sigma_w=1.0)
    r = th.run(3, **stage.initial(), **hp)
    st = stage.state
    r2 = th.run(3, K0=st.q, O_C0=st.p, **hp)
    assert np.allclose(r.J, r2.J, rtol=1e-14) and r.K[0] == st.q and r.O_C[0] == st.p


# ------------------------------------------------------------------ Monte Carlo
class Embeddings(nn.Module):
    """word (+ position) (+ token type) (+ fixed sinusoid) (+ LayerNorm), as in BERT / GPT-2."""

    def __init__(self, V, d, n, s_e, s_pos=None, s_type=None, sinus=False, ln=False):
        super().__init__()
        self.word = nn.Embedding(V, d)
        self.pos = nn.Embedding(n, d) if s_pos is not None else None
        self.tt = nn.Embedding(2, d) if s_type is not None else None
        self.ln = nn.LayerNorm(d, eps=0.0) if ln else None
        self.s = (s_e, s_pos, s_type)
        if sinus:
            w = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            ang = torch.arange(n, dtype=torch.float64)[:, None] * w[None, :]
            pe = torch.zeros(n, d, dtype=torch.float64)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(ang), torch.cos(ang)
            self.register_buffer("sinus", pe)
        else:
            self.sinus = None

    def draw(self, g):
        for mod, s in ((self.word, self.s[0]), (self.pos, self.s[1]), (self.tt, self.s[2])):
            if mod is not None:
                with torch.no_grad():
                    mod.weight.normal_(0.0, s, generator=g)

    def forward(self, ids):
        h = self.word(ids)
        n = ids.shape[-1]
        if self.pos is not None:
            h = h + self.pos(torch.arange(n))
        if self.tt is not None:
            h = h + self.tt(torch.zeros_like(ids))
        if self.sinus is not None:
            h = h + self.sinus[:n]
        return self.ln(h) if self.ln is not None else h


def _stats(h):
    """(q, p, O_T) of h (B, n, d), the estimators of critsym.interop.network.body_input."""
    n, d = h.shape[-2], h.shape[-1]
    q = (h * h).mean()
    col = h.sum(-2)
    p = ((col * col - (h * h).sum(-2)) / (n * (n - 1))).mean()
    S = h.sum(-1)
    ot = ((S * S - (h * h).sum(-1)) / (d * (d - 1))).mean() - h.mean() ** 2
    return torch.stack([q, p, ot])


def _mc(V, d, probs, kw, nets=48, batch=16, seed=0):
    emb = Embeddings(V, d, N, **kw).double()
    out = []
    pr = torch.tensor(probs, dtype=torch.float64)
    for i in range(nets):
        g = torch.Generator().manual_seed(1000 * seed + i)
        emb.draw(g)
        ids = torch.multinomial(pr, batch * N, replacement=True, generator=g).reshape(batch, N)
        with torch.no_grad():
            out.append(_stats(emb(ids)).numpy())
    out = np.array(out)
    return out.mean(0), out.std(0, ddof=1) / math.sqrt(nets)


CASES = {
    "gpt2-like": (dict(s_e=0.8, s_pos=0.6), (0.4, 0.3, 0.2, 0.1), False),
    "bert-like": (dict(s_e=1.0, s_pos=0.5, s_type=0.4, ln=True), (0.25,) * 4, False),
    "sinusoidal": (dict(s_e=0.7, sinus=True), (0.5, 0.5), True),
    "sinusoidal-ln": (dict(s_e=0.7, sinus=True, ln=True), (0.5, 0.5), True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_state_against_embedding_monte_carlo(name):
    kw, probs, sinus = CASES[name]
    widths = (64, 256)
    mcs = [_mc(len(probs), d, probs, kw) for d in widths]
    for i, _q in enumerate(("q", "p", "O_T")):
        if kw.get("ln") and _q != "p":
            # after LayerNorm (eps = 0) every token has mean 0 and mean square 1 exactly, so the
            # estimators give q = 1 and O_T = −Σh²/(d(d − 1)) = −1/(d − 1) at each width d
            exact = [1.0 if _q == "q" else -1.0 / (d - 1) for d in widths]
            assert np.allclose([m[0][i] for m in mcs], exact, rtol=1e-9, atol=1e-12)
            assert cs.InputStage(N, (cs.LearnedPositions(1.0),), layer_norm=True).state.O_T == 0
            continue
        ext, se, _ = extrapolate(widths, [m[0][i] for m in mcs], [m[1][i] for m in mcs])
        # the theory at the width of the sinusoid is exact there; random parts: d → ∞
        theories = []
        for d in widths:
            parts = [cs.TokenEmbedding(len(probs), kw["s_e"], probs)]
            if kw.get("s_pos") is not None:
                parts.append(cs.LearnedPositions(kw["s_pos"]))
            if kw.get("s_type") is not None:
                parts.append(cs.TokenTypes(kw["s_type"]))
            if sinus:
                parts.append(cs.SinusoidalPositions(d))
            st = cs.InputStage(N, tuple(parts), layer_norm=kw.get("ln", False)).state
            theories.append((st.q, st.p, st.O_T)[i])
        th, _, _ = extrapolate(widths, theories, [1.0, 1.0])
        assert abs(ext - th) <= 4 * se, (name, _q, ext, se, th)


def _stage_inputs(V, d, kw):
    """inputs= for simulate_tokens: per network its own nn.Embedding stack and token ids."""
    emb = Embeddings(V, d, N, **kw).double()

    def inputs(networks, dtype, device):
        out = []
        for i in networks:
            g = torch.Generator().manual_seed(7919 + i)
            emb.draw(g)
            ids = torch.randint(0, V, (1, N), generator=g)
            with torch.no_grad():
                out.append(emb(ids)[0])
        return torch.stack(out).to(dtype=dtype, device=device)

    return inputs


def test_blocks_started_from_the_stage_against_monte_carlo():
    """Pre-LN blocks (uniform attention, ReLU MLP) on a real embedding stage: q, p, j after
    each block, theory started from the stage's state, within 4 SE after 1/d extrapolation.
    V = 1000 keeps the id-collision mixture (P(id_a = id_b) = 10⁻³) out of the comparison:
    the token state carries only the pair-averaged covariance."""
    from critsym.torch.tokens import simulate_tokens
    from critsym.torch.validate import score

    V, kw = 1000, dict(s_e=1.0, s_pos=0.5, s_type=0.7)
    stage = cs.InputStage(N, (cs.TokenEmbedding(V, 1.0), cs.LearnedPositions(0.5),
                              cs.TokenTypes(0.7)))
    arch = cs.transformer_block(cs.Attention(N), "relu", "pre", 1.0)
    hp = dict(sigma_v=1.0, sigma_o=1.0, sigma_w=1.2)
    depth, widths = 3, (32, 64)
    th = cs.derive(arch).run(depth, **stage.initial(), **hp)
    sims = [simulate_tokens(arch, (N, w), depth, n_nets=48, n_probes=4, seed=3 + w,
                            inputs=_stage_inputs(V, w, kw), progress=False, **hp)
            for w in widths]
    rows = [score(q, layer, float(getattr(th, q)[layer]), widths,
                  [float(s.mean(q)[layer]) for s in sims], [float(s.se(q)[layer]) for s in sims])
            for q in ("K", "O_C", "J") for layer in range(0, depth + 1)]
    for r in rows:
        if r["reason"] is None and r["z"] is None:  # K at layer 0: fixed by the inputs
            continue
        assert r["z"] is not None and abs(r["z"]) <= 4, r
