"""BatchNorm at initialization: the finite-batch theory of the BatchNorm MLP, sphere
expectations, the torchvision BasicBlock recursion, Monte Carlo over whole batches, and the
explosion-rate report."""

from .report import ExplosionReport, explosion_report
from .resnet import BasicBlockTheory, basic_block
from .sphere import sphere_expect1, sphere_expect2
from .theory import BatchMoments, FiniteBatchTheory, batch_moments, growth_rate

__all__ = [
    "BasicBlockTheory", "BatchMoments", "ExplosionReport", "FiniteBatchTheory", "basic_block",
    "batch_moments", "explosion_report", "growth_rate", "sphere_expect1", "sphere_expect2",
]
