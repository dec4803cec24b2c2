"""Deterministic noise and the few distribution functions the metric model needs, vectorised
with numpy so that a 500-query GetMetricData stays well under a second."""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def key(*parts: object) -> np.uint64:
    """A stable 64-bit key for a tuple of names (same on every machine and run)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _mix(x: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser; uint64 arithmetic wraps, which is what we want.
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniform(k: np.uint64 | np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) noise for each minute, fixed by the key: u(k, m) never changes."""
    with np.errstate(over="ignore"):
        x = _mix(np.asarray(k, dtype=np.uint64) ^ (minutes.astype(np.uint64) * _GOLDEN))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def stochastic_round(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Round to a whole count, up with probability equal to the fraction: unbiased over time."""
    return np.floor(np.maximum(x, 0.0) + u)


def erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + erf(x / np.sqrt(2.0)))


# Acklam's rational approximation of the inverse normal CDF (relative error below 1.2e-9).
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def norm_ppf(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    out = np.empty_like(p)
    low = p < 0.02425
    high = p > 1 - 0.02425
    mid = ~(low | high)
    q = np.sqrt(-2 * np.log(p[low]))
    out[low] = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
        (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1
    )
    q = np.sqrt(-2 * np.log(1 - p[high]))
    out[high] = -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
        (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1
    )
    q = p[mid] - 0.5
    r = q * q
    out[mid] = (
        (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
        * q
        / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1)
    )
    return out


def season(minutes: np.ndarray, daily_amp: float | np.ndarray, weekly_amp: float | np.ndarray) -> np.ndarray:
    """Daily cycle peaking at 12:00 UTC and quieter weekends."""
    hour = (minutes % 1440) / 60.0
    diurnal = 1.0 + daily_amp * np.sin(2 * np.pi * (hour - 6.0) / 24.0)
    weekday = ((minutes // 1440) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    weekly = np.where(weekday >= 5, 1.0 - weekly_amp, 1.0)
    return diurnal * weekly
