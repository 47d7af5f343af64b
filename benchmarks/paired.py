"""Paired seed differences with a confidence interval, and the thread setting of every run.

Shared by ``semi_gain.py`` and ``cot_gain.py``: a method and its baseline run on the same
seeds (the same burn-in, data order and initial weights per seed), so what is compared is
the per-seed difference, and the claim is its mean with a Student-t interval over seeds.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass

from scipy import stats

# Intra-op threads of every benchmark run unless --threads says otherwise. The same for every
# run whatever --jobs is: a CPU reduction's order (and so its rounding) depends on how many
# threads split it, and over a few thousand iterations that moved one seed's AP by 0.01-0.02
# (issue 24: the published RT-DETR table ran 3 jobs x 1 thread, the re-run 1 job x 2).
DEFAULT_THREADS = 1


def run_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of one engine run: ``threads`` intra-op threads (OpenMP, MKL, oneDNN
    and OpenBLAS all read these at start-up), nothing inherited that could change them."""
    env = dict(os.environ if base is None else base)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


@dataclass(frozen=True)
class PairedGain:
    """Mean of per-seed differences (method - baseline) with a two-sided interval."""

    diffs: tuple[float, ...]
    mean: float
    low: float    # nan with fewer than 2 seeds: no interval, no claim
    high: float
    confidence: float

    @property
    def n(self) -> int:
        return len(self.diffs)

    def met(self, target: float) -> bool:
        """Reached: the mean is at least ``target`` and the interval lies above 0."""
        return (not math.isnan(self.low)) and self.low > 0 and self.mean >= target


def paired_gain(diffs: list[float], confidence: float = 0.95) -> PairedGain:
    """t-interval on the mean of paired differences: mean +- t(1-a/2, n-1) * sd / sqrt(n),
    sd the sample standard deviation (n-1 in the denominator)."""
    if not diffs:
        raise ValueError("no paired differences")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return PairedGain(tuple(diffs), mean, math.nan, math.nan, confidence)
    half = (stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(diffs)
            / math.sqrt(n))
    return PairedGain(tuple(diffs), mean, mean - half, mean + half, confidence)


def paired_over(method: dict[int, float], baseline: dict[int, float],
                scale: float = 100.0) -> PairedGain:
    """The gain of ``method`` over ``baseline`` (per-seed values, e.g. AP 0-1) on the seeds
    both ran, in ``scale`` units (AP points by default)."""
    seeds = sorted(set(method) & set(baseline))
    return paired_gain([scale * (method[s] - baseline[s]) for s in seeds])


def format_ci(g: PairedGain) -> str:
    if math.isnan(g.low):
        return "n/a (1 seed)"
    return f"[{g.low:+.1f}, {g.high:+.1f}]"
