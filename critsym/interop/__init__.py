"""Reading torch models into critsym: capture of a model's structure and import readers of
common layer types (:mod:`critsym.interop.hf`)."""
