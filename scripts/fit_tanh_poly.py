"""Fit the float32 coefficients of tanh(x) ~ x + x^3*Q(x^2) used by kernels/mathfn.py.

Q is fitted in float64 for minimal maximum relative error of tanh on [0, X_MAX]
(Lawson's iteratively reweighted least squares on Chebyshev nodes, which
converges to the minimax fit). The coefficients are then rounded to float32 one
at a time, lowest order first, refitting the remaining ones after each rounding
so that they absorb the rounding error. Prints the constants and the error of
the rounded polynomial evaluated in float64.

Run: python scripts/fit_tanh_poly.py
"""
import numpy as np

X_MAX = 1.0  # must match _TANH_POLY_MAX in kernels/mathfn.py
DEGREE = 6  # Q has DEGREE + 1 coefficients
NODES = 4000
LAWSON_STEPS = 40


def q_exact(x: np.ndarray) -> np.ndarray:
    """(tanh(x) - x) / x^3, by its Taylor series where the quotient cancels."""
    u = x * x
    series = -1 / 3 + u * (2 / 15 + u * (-17 / 315 + u * (62 / 2835 + u * (-1382 / 155925))))
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = (np.tanh(x) - x) / (x * u)
    return np.where(x < 0.05, series, direct)


def minimax(a: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Coefficients c minimising max |w * (a @ c - y)| (Lawson's algorithm)."""
    lw = np.full(len(y), 1.0 / len(y))
    for _ in range(LAWSON_STEPS):
        sw = np.sqrt(lw) * w
        c = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)[0]
        err = np.abs(w * (a @ c - y))
        lw = lw * err
        lw /= lw.sum()
    return c


def fit() -> tuple[np.ndarray, float]:
    """float32 coefficients of Q, lowest order first, and their max relative error."""
    k = np.arange(NODES)
    x = X_MAX * 0.5 * (1 + np.cos(np.pi * (k + 0.5) / NODES))
    u = x * x
    a = np.vander(u, DEGREE + 1, increasing=True)
    y = q_exact(x)
    w = x * u / np.tanh(x)  # error in Q times w is the relative error of tanh
    fixed: list[np.float32] = []
    for i in range(DEGREE + 1):
        rest = y - a[:, :i] @ np.array(fixed, dtype=np.float64)
        c = minimax(a[:, i:], rest, w)
        fixed.append(np.float32(c[0]))
    coef = np.array(fixed, dtype=np.float32)
    rel = np.max(np.abs(w * (a @ coef.astype(np.float64) - y)))
    return coef, float(rel)


def main() -> None:
    coef, rel = fit()
    for i, c in enumerate(coef):
        print(f"_T{i} = np.float32({float(c)!r})")
    print(f"# max relative error of tanh on [0, {X_MAX}]: {rel:.3e} ({rel / 2.0**-24:.3f} x 2^-24)")


if __name__ == "__main__":
    main()
