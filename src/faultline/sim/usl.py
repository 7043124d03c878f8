"""The Universal Scalability Law fitted to simulated throughput: contention and coherency.

What lives here: `UslFit` (sigma, kappa, the peak `n_max` and the fit's r2) and
`fit_usl`, which takes (N, throughput X(N)) points, forms the relative capacity
C(N) = X(N)/X(1) and fits C(N) = N / (1 + sigma (N-1) + kappa N (N-1)) by least squares on
the linear form N/C - 1 = sigma (N-1) + kappa N (N-1), with sigma, kappa >= 0.

Rule kept: pure Python arithmetic on the numbers given, so the same points always give
the same fit.  Must not be added: running the simulator, plotting, or numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["UslFit", "fit_usl", "usl_capacity"]


def usl_capacity(n: float, sigma: float, kappa: float) -> float:
    """C(N) = N / (1 + sigma (N-1) + kappa N (N-1)), the USL relative capacity."""
    return n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """A USL fit: contention `sigma`, coherency `kappa`, the N of peak capacity
    (`n_max`, None when capacity never peaks) and r2 of C(N) against the data."""

    sigma: float
    kappa: float
    n_max: float | None
    r2: float

    def capacity(self, n: float) -> float:
        """The fitted relative capacity C(n)."""
        return usl_capacity(n, self.sigma, self.kappa)


def _sse(rows: list[tuple[float, float, float]], sigma: float, kappa: float) -> float:
    """Squared residuals of the linear form for (a = N-1, b = N(N-1), y = N/C - 1) rows."""
    return math.fsum((y - sigma * a - kappa * b) ** 2 for a, b, y in rows)


def _nonnegative_fit(rows: list[tuple[float, float, float]]) -> tuple[float, float]:
    """(sigma, kappa) >= 0 minimising the linear-form residuals (2-variable NNLS).

    Tries the joint solution of the 2x2 normal equations; if either coefficient comes
    out negative, the best of the one-coefficient refits (and zero) is kept instead.
    """
    saa = math.fsum(a * a for a, _, _ in rows)
    sab = math.fsum(a * b for a, b, _ in rows)
    sbb = math.fsum(b * b for _, b, _ in rows)
    say = math.fsum(a * y for a, _, y in rows)
    sby = math.fsum(b * y for _, b, y in rows)
    det = saa * sbb - sab * sab
    if det > 0:
        sigma = (say * sbb - sby * sab) / det
        kappa = (sby * saa - say * sab) / det
        if sigma >= 0 and kappa >= 0:
            return sigma, kappa
    candidates = [(0.0, 0.0)]
    if saa > 0:
        candidates.append((max(say / saa, 0.0), 0.0))
    if sbb > 0:
        candidates.append((0.0, max(sby / sbb, 0.0)))
    return min(candidates, key=lambda c: _sse(rows, *c))


def _r2(caps: list[tuple[float, float]], sigma: float, kappa: float) -> float:
    """Coefficient of determination of the fitted C(N) against measured (N, C) pairs."""
    mean = math.fsum(c for _, c in caps) / len(caps)
    ss_tot = math.fsum((c - mean) ** 2 for _, c in caps)
    ss_res = math.fsum((c - usl_capacity(n, sigma, kappa)) ** 2 for n, c in caps)
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1 - ss_res / ss_tot


def fit_usl(points: Sequence[tuple[int, float]]) -> UslFit | None:
    """Fit the USL to (N, X(N)) throughput points, or None if they cannot support a fit.

    Needs a point at N == 1 with X(1) > 0 (several are averaged; any X(1) <= 0 means no
    fit) and at least three distinct N.  Points with N < 1 or X(N) <= 0 are left out
    (C would be undefined).
    """
    ones = [float(x) for n, x in points if n == 1]
    usable = [(int(n), float(x)) for n, x in points if n >= 1 and x > 0]
    if not ones or min(ones) <= 0 or len({n for n, _ in usable}) < 3:
        return None
    x1 = math.fsum(ones) / len(ones)
    caps = [(float(n), x / x1) for n, x in usable]
    rows = [(n - 1, n * (n - 1), n / c - 1) for n, c in caps]
    sigma, kappa = _nonnegative_fit(rows)
    n_max = math.sqrt((1 - sigma) / kappa) if kappa > 0 and sigma < 1 else None
    return UslFit(sigma=sigma, kappa=kappa, n_max=n_max, r2=_r2(caps, sigma, kappa))
