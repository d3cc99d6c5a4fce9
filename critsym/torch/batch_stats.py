"""BatchNorm running statistics left untouched while a model is measured."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_batch_stats(model: nn.Module) -> Iterator[nn.Module]:
    """BatchNorm modules in training mode normalise with the batch statistics but do not update
    their running statistics (the model's buffers are left as they were)."""
    changed = [m for m in model.modules()
               if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield model
    finally:
        for m in changed:
            m.track_running_stats = True
