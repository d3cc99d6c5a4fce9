"""BatchNorm at initialization: the finite-batch theory of the BatchNorm MLP, sphere
expectations, Monte Carlo over whole batches, and the explosion-rate report."""

from .report import ExplosionReport, explosion_report
from .sphere import sphere_expect1, sphere_expect2
from .theory import BatchMoments, FiniteBatchTheory, batch_moments, growth_rate

__all__ = ["BatchMoments", "ExplosionReport", "explosion_report", "FiniteBatchTheory", "batch_moments", "growth_rate",
           "sphere_expect1", "sphere_expect2"]
