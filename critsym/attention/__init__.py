"""Self-attention at initialization: the token-mixing moments of each attention regime.

* :mod:`critsym.attention.weights` — the mixing moments D, X of the uniform and deterministic
  regimes (and of two inputs' matrices), used by the fold rule of
  :class:`critsym.ops.attention.Attention`.
"""
