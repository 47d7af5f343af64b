"""Curve maths for the TUI: min/max downsampling to a pixel width and EMA smoothing.

numpy only (no Textual, no torch). A terminal plot is at most a few hundred pixel columns
wide while a run can hold a million points, so every curve is bucketed into one bucket per
pixel column before plotting. Each bucket keeps its minimum *and* maximum, so a one-step
loss spike stays visible however long the run is; :func:`envelope` turns the buckets into
a polyline that draws the spike as a vertical stroke in its column.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Columns", "ema", "envelope", "minmax_columns", "nice_ticks", "si_label",
           "smoothing_alpha"]

_EMA_BLOCK = 256
"""Block length of the vectorised EMA; with alpha <= 0.5, (1-alpha)**-256 < 1e78 stays
well inside float64 range."""


class Columns(NamedTuple):
    """Per-column summary of a curve: the column's x centre and its y min, max and mean."""

    x: np.ndarray
    y_min: np.ndarray
    y_max: np.ndarray
    mean: np.ndarray


_EMPTY = Columns(np.empty(0), np.empty(0), np.empty(0), np.empty(0))


def _as_float(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def minmax_columns(xs: object, ys: object, width: int,
                   x_range: tuple[float, float] | None = None) -> Columns:
    """Bucket the points into ``width`` equal x columns; keep each column's y min, max, mean.

    ``xs`` must be sorted ascending (iterations and wall times are). Points whose y is NaN
    are ignored; empty columns are dropped. ``x_range`` sets the bucketed span (default:
    the data's own span), so several curves can share columns. O(n) with a few numpy passes.
    """
    x = _as_float(xs)
    y = _as_float(ys)
    if x.shape != y.shape:
        raise ValueError(f"xs and ys differ in length: {x.shape} != {y.shape}")
    keep = ~np.isnan(y)
    if not keep.all():
        x, y = x[keep], y[keep]
    if x.size == 0 or width < 1:
        return _EMPTY
    lo, hi = x_range if x_range is not None else (float(x[0]), float(x[-1]))
    if hi <= lo:
        return Columns(np.array([lo]), np.array([y.min()]), np.array([y.max()]),
                       np.array([y.mean()]))
    edges = np.linspace(lo, hi, width + 1)
    # Bucket b holds lo + b*step <= x < lo + (b+1)*step; the last one also holds x == hi.
    starts = np.searchsorted(x, edges[:-1], side="left")
    stop = np.searchsorted(x, hi, side="right")
    ends = np.append(starts[1:], stop)
    filled = ends > starts
    starts = starts[filled]
    if starts.size == 0:
        return _EMPTY
    y_in = y[: int(stop)]
    y_min = np.minimum.reduceat(y_in, starts)
    y_max = np.maximum.reduceat(y_in, starts)
    sums = np.add.reduceat(y_in, starts)
    counts = np.diff(np.append(starts, stop))
    centres = (edges[:-1] + edges[1:])[filled] / 2.0
    return Columns(centres, y_min, y_max, sums / counts)


def envelope(xs: object, ys: object, width: int,
             x_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A polyline of at most ``2 * width`` points that draws the min/max band of the curve.

    With no more points than columns the data come back unchanged (nothing to merge).
    Otherwise each column contributes its min and its max at its centre x, so a line plot
    of the result draws a vertical stroke covering the column's whole range. Each stroke
    starts at whichever end is nearer to where the previous one ended: the line then steps
    between neighbouring extremes instead of crossing the band diagonally, which draws the
    same band with about a fifth fewer pixels (plotext rasterises every pixel in Python).
    """
    x = _as_float(xs)
    y = _as_float(ys)
    if x.size <= width:
        keep = ~np.isnan(y)
        return x[keep], y[keep]
    cols = minmax_columns(x, y, width, x_range)
    out_y: list[float] = []
    end = float(cols.y_min[0]) if cols.y_min.size else 0.0
    for lo, hi in zip(cols.y_min.tolist(), cols.y_max.tolist(), strict=True):
        if abs(hi - end) < abs(lo - end):
            lo, hi = hi, lo
        out_y += (lo, hi)
        end = hi
    return np.repeat(cols.x, 2), np.asarray(out_y, dtype=np.float64)


def smoothing_alpha(n_points: int, fraction: float = 0.02) -> float:
    """The EMA weight whose span is ``fraction`` of the curve (at least 2 points), so a
    curve of 100 points and one of a million look equally smooth at the same width."""
    span = max(2.0, n_points * fraction)
    return min(0.5, 2.0 / (span + 1.0))


def ema(ys: object, alpha: float) -> np.ndarray:
    """Exponential moving average ``s[i] = alpha*y[i] + (1-alpha)*s[i-1]``, ``s[0] = y[0]``.

    A NaN (no value) leaves the average where it was. Vectorised in blocks of 256 points
    (a Python loop over a million points would take a third of a second; this takes
    milliseconds).
    """
    if not 0.0 < alpha <= 0.5:
        raise ValueError(f"alpha must be in (0, 0.5], got {alpha}")
    y = _as_float(ys)
    valid = ~np.isnan(y)
    if valid.all():
        return _ema_dense(y, alpha)
    if not valid.any():
        return y.copy()
    smoothed = _ema_dense(y[valid], alpha)
    # Each position takes the average as of the last valid point at or before it (the
    # leading NaNs take the first one).
    last_valid = np.maximum(np.cumsum(valid) - 1, 0)
    return smoothed[last_valid]


def _ema_dense(y: np.ndarray, alpha: float) -> np.ndarray:
    n = y.size
    if n == 0:
        return y.copy()
    w = 1.0 - alpha
    b = _EMA_BLOCK
    n_blocks = -(-n // b)
    padded = np.zeros(n_blocks * b)
    padded[:n] = y
    blocks = padded.reshape(n_blocks, b)
    k = np.arange(b)
    # Within a block, starting from a zero state: s[i] = alpha * sum_k<=i w**(i-k) y[k].
    local = np.cumsum(blocks * w ** (-k), axis=1) * (alpha * w**k)
    # The state carried into block j decays by w**(i+1) inside it.
    decay = w ** (k + 1)
    carry = np.empty(n_blocks)
    state = y[0]  # s[-1] := y[0] makes s[0] = y[0]
    wb = w**b
    last = local[:, -1]
    for j in range(n_blocks):  # n/256 iterations: a few thousand for a million points
        carry[j] = state
        state = wb * state + last[j]
    out = local + carry[:, None] * decay[None, :]
    return out.reshape(-1)[:n]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten)
    inside ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def si_label(value: float) -> str:
    """``1500`` -> ``1.5k``, ``2_000_000`` -> ``2M``: short labels for iteration counts."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"
