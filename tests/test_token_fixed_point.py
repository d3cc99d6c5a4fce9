"""Fixed points of token states where the tokens collapse (O_C → K − O_T, the boundary of the
admissible state set): the solver must converge onto the boundary, not report "unconverged"."""

import numpy as np

import critsym as cs


def test_pre_ln_fixed_point_on_the_collapse_boundary_matches_the_iterated_map():
    th = cs.derive(cs.transformer_block(attention=cs.Attention(8), mlp_act="relu", norm="pre",
                                        mu=0.8))
    hp = dict(sigma_v=np.array([0.5, 1.0, 2.0]), sigma_o=1.0, sigma_w=1.0)
    fp = cs.fixed_point(th, **hp)
    # independent path: plain iteration of the map for many blocks from a non-collapsed start
    r = th.run(3000, K0=1.0, O_C0=0.2, **hp)
    assert list(fp.status) == ["finite"] * 3
    assert np.allclose(fp.K_star, r.K[-1], rtol=1e-8)
    assert np.allclose(fp.O_C_star, r.O_C[-1], rtol=1e-8)
    assert np.allclose(fp.O_C_star, fp.K_star, rtol=1e-8)  # collapsed tokens
    assert np.allclose(fp.chi_star, r.chi[-1], atol=1e-5)
