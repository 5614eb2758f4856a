"""Measurements on trained networks: Frechet distance, learned ASH thresholds and the fraction
of units actually active per layer.

- :func:`frechet_distance`: the Frechet (2-Wasserstein) distance between two Gaussians,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``, computed with symmetric
  eigendecompositions in float64 (no scipy); :func:`frechet_distance_features` fits the
  Gaussians to two sets of feature vectors (the FID recipe with any feature extractor).
- :func:`precision_recall`: improved precision and recall of a generative model (Kynkaenniemi
  et al., 2019): the share of generated feature vectors inside the k-NN manifold of the real ones,
  and the share of real ones inside that of the generated ones (:func:`manifold_membership`).
- :func:`ash_thresholds`: the learned ``z``, implied ``k = 1 - Phi(z)`` and ``alpha`` of every
  ASH-type site, in forward order with its relative depth.
- :func:`active_fractions`: with forward hooks on every activation site, the fraction of
  inputs whose gate exceeds one half on held-out data. For the ASH family that is
  ``x > mu_X + z sigma_X`` (per sample, over the module's ``dim``); for ReLU, Swish, SiLU,
  GELU and the others it is ``x > 0``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from .. import functional as AF
from .. import modules as M

__all__ = ["sqrtm_psd", "frechet_distance", "gaussian_stats", "frechet_distance_features", "ash_thresholds",
           "active_fractions", "ASH_TYPES", "extract_features", "manifold_membership", "precision_recall"]

#: Modules whose gate is the ASH threshold mu + z*sigma.
ASH_TYPES = (M.ASH, M.HardASH)


def sqrtm_psd(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    a = (a + a.T) / 2
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    The trace of ``(S1 S2)^1/2`` is computed as that of the symmetric PSD matrix
    ``(S1^1/2 S2 S1^1/2)^1/2`` (same eigenvalues), so only symmetric eigendecompositions are needed.
    """
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
                         f"sigma {tuple(s1.shape)}, {tuple(s2.shape)}")
    r1 = sqrtm_psd(s1)
    inner = r1 @ s2 @ r1
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0)
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * eig.sqrt().sum()
    return float(fd.clamp(min=0))


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance (n - 1) of (n, d) features, in float64."""
    f = torch.as_tensor(features, dtype=torch.float64)
    if f.dim() != 2 or len(f) < 2:
        raise ValueError(f"features must be (n >= 2, d); got {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


def frechet_distance_features(f1: Tensor, f2: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


@torch.no_grad()
def extract_features(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 512) -> Tensor:
    """``fn`` applied to ``x`` in batches, concatenated (no gradients)."""
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from ..models.resnet import activation_sites  # noqa: PLC0415

    return activation_sites(model)


def ash_thresholds(model: nn.Module) -> list[dict[str, Any]]:
    """One row per ASH-type site (ASH, L-ASH, F-ASH) in forward order: name, site index, relative
    depth in [0, 1] among *all* activation sites, z, implied k = 1 - Phi(z), alpha (and slope)."""
    sites = _sites(model)
    n = len(sites)
    rows = []
    for i, (name, m) in enumerate(sites):
        if isinstance(m, M.ASH):
            row = {"site": i, "name": name, "depth": i / max(n - 1, 1), "kind": type(m).__name__,
                   "z": m.z, "k": m.k, "alpha": m.alpha}
            if isinstance(m, M.LeakyASH):
                row["slope"] = m.slope
            rows.append(row)
    return rows


def _gate_open(m: nn.Module, x: Tensor) -> Tensor:
    """Boolean mask of the inputs whose gate exceeds 1/2 at site ``m``."""
    if isinstance(m, M.ASH):
        mu, sigma = AF.map_statistics(x, m.dim, m.eps)
        return x > mu + m.z_param.detach().to(x.dtype) * sigma
    if isinstance(m, M.HardASH):
        mu, sigma = AF.map_statistics(x, m.dim, m.eps)
        return x >= mu + m.z * sigma
    return x > 0


@torch.no_grad()
def active_fractions(model: nn.Module, x: Tensor | Iterable[Tensor], batch_size: int = 256,
                     per_sample: bool = False) -> list[dict[str, Any]]:
    """Fraction of each activation site's inputs whose gate is open (> 1/2), on the inputs ``x``.

    Args:
        model: any network; every activation module (see :func:`ashlib.models.activation_sites`)
            gets a temporary forward hook. The model runs in eval mode (restored afterwards).
        x: a (N, ...) input tensor, or an iterable of input batches.
        per_sample: also return, per site, the standard deviation over samples of the
            per-sample active fraction (``sd_over_samples``).

    Returns:
        one row per site in forward order: site, name, depth (relative, in [0, 1]), kind, active
        (the pooled fraction), and sd_over_samples when asked.
    """
    sites = _sites(model)
    counts = {i: [0.0, 0.0] for i in range(len(sites))}
    per: dict[int, list[Tensor]] = {i: [] for i in range(len(sites))}
    handles = []
    for i, (_, m) in enumerate(sites):
        def hook(mod, inputs, output, i=i):  # noqa: ANN001
            xin = inputs[0].float()
            g = _gate_open(mod, xin)
            counts[i][0] += float(g.sum())
            counts[i][1] += g.numel()
            if per_sample:
                per[i].append(g.flatten(1).float().mean(1) if g.dim() > 1 else g.float().mean()[None])
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        batches = ([x[j:j + batch_size] for j in range(0, len(x), batch_size)] if isinstance(x, Tensor) else x)
        dev = next(model.parameters()).device
        for b in batches:
            model(b.to(dev))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    n = len(sites)
    rows = []
    for i, (name, m) in enumerate(sites):
        row = {"site": i, "name": name, "depth": i / max(n - 1, 1), "kind": type(m).__name__,
               "active": counts[i][0] / max(counts[i][1], 1.0)}
        if per_sample:
            row["sd_over_samples"] = float(torch.cat(per[i]).std()) if per[i] else float("nan")
        rows.append(row)
    return rows


def _kth_neighbour_radii(ref: Tensor, k: int) -> Tensor:
    d = torch.cdist(ref, ref)
    # the k-th nearest *other* point: index k of the sorted row, whose index 0 is the point itself
    return d.kthvalue(k + 1, dim=1).values


@torch.no_grad()
def manifold_membership(ref: Tensor, query: Tensor, k: int = 3) -> Tensor:
    """Whether each row of ``query`` lies in the k-NN manifold of ``ref`` (Kynkaenniemi et al., 2019).

    The manifold is the union of balls, one around every reference point, whose radius is the
    distance from that point to its ``k``-th nearest other reference point (Euclidean, float64).
    Returns a bool tensor of ``len(query)``.

    Raises:
        ValueError: the feature sets are not (n, d) with the same d, or ``k`` is not in 1..len(ref)-1.
    """
    r = torch.as_tensor(ref, dtype=torch.float64)
    q = torch.as_tensor(query, dtype=torch.float64)
    if r.dim() != 2 or q.dim() != 2 or r.shape[1] != q.shape[1]:
        raise ValueError(f"ref and query must be (n, d) with the same d; got {tuple(r.shape)}, {tuple(q.shape)}")
    if not 1 <= k < len(r):
        raise ValueError(f"k={k}; must be in 1..{len(r) - 1} (len(ref) - 1)")
    radii = _kth_neighbour_radii(r, k)
    return (torch.cdist(q, r) <= radii[None, :]).any(dim=1)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of a generative model (Kynkaenniemi et al., NeurIPS 2019).

    precision: the share of ``fake`` feature vectors inside the k-NN manifold of ``real`` (how many
    generated images look like some real ones); recall: the share of ``real`` inside the manifold
    of ``fake`` (how much of the real variety the generator covers; low under mode collapse).
    The paper uses k = 3."""
    return (float(manifold_membership(real, fake, k).double().mean()),
            float(manifold_membership(fake, real, k).double().mean()))
