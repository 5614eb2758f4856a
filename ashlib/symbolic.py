"""Symbolic formulas (sympy): the single source of truth for the math of ashlib.

Every activation in :mod:`ashlib.functional` has its formula here, written the way the
papers write it (no numerical tricks). Tests and notebooks use these expressions as the
reference: :func:`evaluate` evaluates them with mpmath at 50 significant digits, and
:func:`ash_map` / :func:`ash_map_jacobian` do the same for a whole feature map, including
the per-sample mean and standard deviation that ASH thresholds on.

Symbols follow the papers: ``x`` the input, ``t = mu + z*sigma`` the ASH threshold,
``alpha`` the sharpness (ASH) or shape (Farhadi et al.), ``k`` the kept fraction and
``z`` its Gaussian quantile, ``beta`` the Swish slope, ``a`` the leaky slope.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Iterable, List, Sequence

import mpmath
import sympy as sp

#: Working precision (decimal digits) of the mpmath references.
DPS = 50

x, t, z, k = sp.symbols("x t z k", real=True)
mu = sp.Symbol("mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
alpha = sp.Symbol("alpha", positive=True)
beta = sp.Symbol("beta", real=True)
slope = sp.Symbol("a", positive=True)


def sigmoid(u: sp.Expr) -> sp.Expr:
    """Logistic function S(u) = 1 / (1 + exp(-u))."""
    return 1 / (1 + sp.exp(-u))


def heaviside(u: sp.Expr) -> sp.Expr:
    """H(u) with the convention H(0) = 1, matching ``x >= mu + z*sigma`` in ASH (App. A1)."""
    return sp.Heaviside(u, 1)


def threshold(mu_: sp.Expr = mu, sigma_: sp.Expr = sigma, z_: sp.Expr = z) -> sp.Expr:
    """ASH threshold t = mu + z*sigma (README section 2)."""
    return mu_ + z_ * sigma_


# --- ASH (Lee et al., NeurIPS 2022) -------------------------------------------------------
#: Smooth ASH, App. eq. A4: x / (1 + exp(-2*alpha*(x - t))).
ASH = x * sigmoid(2 * alpha * (x - t))
#: Hard ASH, App. eq. A2: x * H(x - t).
HARD_ASH = x * heaviside(x - t)
#: The tanh smoothing, App. eq. A3: x/2 + (x/2) tanh(alpha*(x - t)).
ASH_TANH = x / 2 + x / 2 * sp.tanh(alpha * (x - t))
#: Equation 5 / A1 exactly as printed: x * S(-2*alpha*(x - t)).
ASH_AS_PRINTED = x * sigmoid(-2 * alpha * (x - t))
#: Leaky ASH (App. A8, smoothed like A4): x * (a + (1 - a) * S(2*alpha*(x - t))).
LEAKY_ASH = x * (slope + (1 - slope) * sigmoid(2 * alpha * (x - t)))

# --- Gaussian percentile map ---------------------------------------------------------------
#: Standard normal CDF Phi(z).
PHI = (1 + sp.erf(z / sp.sqrt(2))) / 2
#: Fraction of a normal map kept above mu + z*sigma: k(z) = 1 - Phi(z).
K_FROM_Z = 1 - PHI

# --- Farhadi et al., ICPRAM 2020 -----------------------------------------------------------
#: Adaptive Gumbel, eq. 1: 1 - (1 + alpha*exp(x))**(-1/alpha).
ADAPTIVE_GUMBEL = 1 - (1 + alpha * sp.exp(x)) ** (-1 / alpha)
#: Its alpha -> 0 limit, the Gumbel (min) CDF 1 - exp(-exp(x)).
GUMBEL_CDF = 1 - sp.exp(-sp.exp(x))
#: Exponential CDF used by adaptive ReLU, eq. 2 (for x > 0; 0 otherwise).
EXPONENTIAL_CDF = sp.Piecewise((1 - sp.exp(-alpha * x), x > 0), (0, True))
#: Adaptive ReLU with the exponential CDF, eq. 2: x * (1 - exp(-alpha*x)) * 1[x > 0].
ADAPTIVE_RELU = x * EXPONENTIAL_CDF
#: Adaptive ReLU with the logistic CDF, eq. 3: x * S(alpha*x) (Swish with beta = alpha).
ADAPTIVE_RELU_LOGISTIC = x * sigmoid(alpha * x)
#: Swish (Ramachandran et al.): x * S(beta*x); SiLU at beta = 1.
SWISH = x * sigmoid(beta * x)

#: Every scalar formula by name; the names match ashlib.functional.
FORMULAS: Dict[str, sp.Expr] = {
    "ash": ASH,
    "hard_ash": HARD_ASH,
    "ash_tanh": ASH_TANH,
    "ash_as_printed": ASH_AS_PRINTED,
    "leaky_ash": LEAKY_ASH,
    "k_from_z": K_FROM_Z,
    "adaptive_gumbel": ADAPTIVE_GUMBEL,
    "gumbel_cdf": GUMBEL_CDF,
    "adaptive_relu": ADAPTIVE_RELU,
    "adaptive_relu_logistic": ADAPTIVE_RELU_LOGISTIC,
    "swish": SWISH,
}

_SYMBOLS = {s.name: s for s in (x, t, z, k, mu, sigma, alpha, beta, slope)}


def formula(name: str) -> sp.Expr:
    """The sympy expression of an activation by name (see :data:`FORMULAS`)."""
    try:
        return FORMULAS[name]
    except KeyError:
        raise ValueError(f"name={name!r} is not a known formula; known: {sorted(FORMULAS)}") from None


def derivative(name: str, wrt: str) -> sp.Expr:
    """Symbolic derivative of formula ``name`` with respect to the symbol named ``wrt``."""
    return sp.diff(formula(name), _SYMBOLS[wrt])


_LAMBDA_CACHE: Dict[tuple, Callable] = {}
_NEGLIGIBLE = mpmath.mpf("1e-100")


def _lambdified(expr: sp.Expr, names: Sequence[str]) -> Callable:
    key = (sp.srepr(expr), tuple(names))
    fn = _LAMBDA_CACHE.get(key)
    if fn is None:
        fn = sp.lambdify([_SYMBOLS[n] for n in names], expr, modules="mpmath")
        _LAMBDA_CACHE[key] = fn
    return fn


def evaluate(expr: sp.Expr | str, dps: int = DPS, **values: float) -> mpmath.mpf:
    """Evaluate a formula (or a name from :data:`FORMULAS`) with mpmath at ``dps`` digits.

    Float arguments are converted exactly (a float64 is a dyadic rational), so the result is
    the true value of the formula at the given floats, correct to about ``dps`` digits.

    >>> float(evaluate("adaptive_gumbel", x=0.0, alpha=1.0))
    0.5
    """
    if isinstance(expr, str):
        expr = formula(expr)
    names = sorted(s.name for s in expr.free_symbols)
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"missing values for symbols {missing}")
    fn = _lambdified(expr, names)
    # Formulas that cancel (d/dalpha of adaptive Gumbel at small alpha*exp(x) loses ~40 digits)
    # are re-evaluated at growing precision until two runs agree to ``dps`` digits.
    prev = None
    work = dps + 10
    while True:
        with mpmath.workdps(work):
            cur = fn(*[mpmath.mpf(values[n]) for n in names])
            if prev is not None and (cur == prev or abs(cur - prev) <= abs(cur) * mpmath.mpf(10) ** (-dps)):
                break
            # astronomically small values (exp(-exp(400)), say) carry their error in the exponent;
            # they only ever serve as "below 1e-30", which both runs agree on
            if prev is not None and abs(cur) < _NEGLIGIBLE and abs(prev) < _NEGLIGIBLE:
                break
            if work > 8 * dps:
                raise ArithmeticError(f"no {dps}-digit agreement up to {work} digits for {expr} at {values}")
            prev, work = cur, 2 * work
    with mpmath.workdps(dps):
        return +cur


def evaluate_many(expr: sp.Expr | str, dps: int = DPS, **arrays: Iterable[float]) -> List[mpmath.mpf]:
    """Element-wise :func:`evaluate` over equal-length sequences of argument values."""
    names = sorted(arrays)
    cols = [list(arrays[n]) for n in names]
    return [evaluate(expr, dps=dps, **dict(zip(names, row))) for row in zip(*cols)]


# --- whole feature maps: mean and standard deviation enter the formula ----------------------


def map_statistics(xs: Sequence[float], eps: float = 1e-5, dps: int = DPS):
    """Mean and ``sqrt(population variance + eps)`` of a feature map, at ``dps`` digits."""
    with mpmath.workdps(dps):
        vals = [mpmath.mpf(v) for v in xs]
        n = len(vals)
        m = mpmath.fsum(vals) / n
        var = mpmath.fsum((v - m) ** 2 for v in vals) / n
        return m, mpmath.sqrt(var + mpmath.mpf(eps))


def ash_map(xs: Sequence[float], z: float = 0.0, alpha: float = 1.0, eps: float = 1e-5,
            kind: str = "ash", slope: float = 0.01, dps: int = DPS) -> List[mpmath.mpf]:
    """Reference ASH of one sample's feature map ``xs`` (flattened), at ``dps`` digits.

    ``kind`` is ``"ash"`` (A4), ``"leaky_ash"`` or ``"hard_ash"`` (A2).
    """
    expr = formula(kind)
    with mpmath.workdps(dps):
        m, s = map_statistics(xs, eps, dps)
        tt = m + mpmath.mpf(z) * s
        names = sorted(s_.name for s_ in expr.free_symbols)
        fn = _lambdified(expr, names)
        out = []
        for v in xs:
            subs = {"x": mpmath.mpf(v), "t": tt, "alpha": mpmath.mpf(alpha), "a": mpmath.mpf(slope)}
            out.append(+fn(*[subs[n] for n in names]))
        return out


def ash_map_symbolic(n: int, kind: str = "ash"):
    """ASH of a map of ``n`` symbolic elements, with mu and sigma written out.

    Returns ``(xs, outputs)``: the symbols ``x0..x{n-1}`` and the list of output
    expressions, where each output depends on every input through mu and sigma. Symbols
    ``z``, ``alpha``, ``a`` and ``eps`` stay free. Differentiating these expressions gives
    the exact Jacobian, including the terms through the statistics.
    """
    xs = sp.symbols(f"x0:{n}", real=True)
    eps = sp.Symbol("eps", positive=True)
    m = sum(xs) / n
    s = sp.sqrt(sum((xi - m) ** 2 for xi in xs) / n + eps)
    expr = formula(kind)
    outs = [expr.subs({x: xi, t: m + z * s}) for xi in xs]
    return xs, outs


@functools.lru_cache(maxsize=None)
def _jacobian_functions(n: int, kind: str):
    xs, outs = ash_map_symbolic(n, kind)
    eps_s = sp.Symbol("eps", positive=True)
    args = list(xs) + [z, alpha, slope, eps_s]
    params = {"dz": z, "dalpha": alpha}
    if kind == "leaky_ash":
        params["da"] = slope
    lam = lambda e: sp.lambdify(args, e, modules="mpmath")  # noqa: E731
    dx = [[lam(sp.diff(o, xj)) for xj in xs] for o in outs]
    dp = {key: [lam(sp.diff(o, sym)) for o in outs] for key, sym in params.items()}
    return dx, dp


def ash_map_jacobian(xs_val: Sequence[float], z_val: float, alpha_val: float, eps: float = 1e-5,
                     kind: str = "ash", slope_val: float = 0.01, dps: int = DPS):
    """Exact derivatives of reference ASH over a small map, by sympy differentiation.

    Returns a dict with ``"dx"`` (an n x n list: d out_i / d x_j), ``"dz"``, ``"dalpha"`` and,
    for Leaky ASH, ``"da"`` (lists of d out_i / d parameter), all evaluated at ``dps`` digits.
    Meant for small maps (n up to about 8): the expressions grow with n.
    """
    dx, dp = _jacobian_functions(len(xs_val), kind)
    with mpmath.workdps(dps + 20):  # the terms through mu and sigma cancel partly: keep spare digits
        vals = [mpmath.mpf(v) for v in xs_val] + [mpmath.mpf(z_val), mpmath.mpf(alpha_val),
                                                   mpmath.mpf(slope_val), mpmath.mpf(eps)]
        res: Dict[str, list] = {"dx": [[f(*vals) for f in row] for row in dx]}
        res.update({key: [f(*vals) for f in fs] for key, fs in dp.items()})
    with mpmath.workdps(dps):
        res["dx"] = [[+v for v in row] for row in res["dx"]]
        for key in dp:
            res[key] = [+v for v in res[key]]
        return res


def z_from_k(k_val: float, dps: int = DPS) -> mpmath.mpf:
    """Reference Gaussian quantile z_k = Phi^-1(1 - k) = sqrt(2) erfinv(1 - 2k), at ``dps`` digits."""
    with mpmath.workdps(dps + 20):  # 1 - 2k is exact at this precision for any float k
        kk = mpmath.mpf(k_val)
        zz = mpmath.sqrt(2) * mpmath.erfinv(1 - 2 * kk)
    with mpmath.workdps(dps):
        return +zz
