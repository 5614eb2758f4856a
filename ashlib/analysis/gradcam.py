"""Grad-CAM (Selvaraju et al., ICCV 2017) with forward and gradient hooks.

For a target layer with feature maps :math:`A_k` (k = channel) and a class score :math:`y^c`
(a logit), Grad-CAM weighs each channel by the spatial mean of the score's gradient and
keeps the positive part of the weighted sum:

.. math:: w_k = \\frac{1}{HW} \\sum_{i,j} \\frac{\\partial y^c}{\\partial A_k[i, j]}, \\qquad
          L^c = \\mathrm{ReLU}\\Big(\\sum_k w_k A_k\\Big).

:class:`GradCAM` registers a forward hook on the layer (to keep :math:`A`) and a gradient
hook on its output (to keep :math:`\\partial y^c / \\partial A`), runs one forward and one
backward pass, and returns the maps normalised to [0, 1] per image (and upsampled to the
input size unless ``upsample=False``). ASH's appendix (Supp. Fig. 2) shows such maps for
ReLU, Swish and ASH networks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GradCAM", "gradcam_formula", "normalise_maps", "mass_inside", "map_area", "pool_to_grid",
           "localisation"]


def gradcam_formula(activations: Tensor, gradients: Tensor) -> Tensor:
    """``ReLU(sum_k mean_ij(dy/dA_k) * A_k)`` for (N, K, H, W) activations and gradients -> (N, H, W)."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activations).sum(dim=1))


def normalise_maps(maps: Tensor) -> Tensor:
    """Scale each (H, W) map of (N, H, W) to [0, 1] by its min and max (all-equal maps become 0)."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    span = hi - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(maps))


class GradCAM:
    """Grad-CAM maps of ``model`` at ``target_layer``.

    Args:
        model: a classifier returning logits (N, classes).
        target_layer: a submodule whose output is a (N, K, H, W) feature map.

    Call with a batch ``x`` and optional ``target`` classes (default: the predicted class):
    returns (N, H', W') maps in [0, 1]. The model runs in eval mode for the call (and is put
    back in its previous mode afterwards). :attr:`raw` keeps the last unnormalised maps at the
    layer's resolution, :attr:`activations` and :attr:`gradients` the hooked tensors.
    Use as a context manager, or call :meth:`remove`, to take the hooks off.

    Example::

        >>> import torch
        >>> from ashlib.models.resnet import preact_resnet
        >>> net = preact_resnet(20, act="ash")
        >>> with GradCAM(net, net.stage3) as cam:
        ...     maps = cam(torch.randn(2, 3, 32, 32))   # (N, H, W) at the input size, in [0, 1]
        >>> tuple(maps.shape), bool(((maps >= 0) & (maps <= 1)).all())
        ((2, 32, 32), True)
    """

    def __init__(self, model: nn.Module, target_layer: nn.Module) -> None:
        if not isinstance(target_layer, nn.Module) or not any(m is target_layer for m in model.modules()):
            raise ValueError("target_layer must be a submodule of model")
        self.model = model
        self.target_layer = target_layer
        self.activations: Tensor | None = None
        self.gradients: Tensor | None = None
        self.raw: Tensor | None = None
        self._handle = target_layer.register_forward_hook(self._forward_hook)

    def _forward_hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if not isinstance(output, Tensor) or output.dim() != 4:
            raise ValueError(f"the target layer must output a (N, K, H, W) tensor; got {type(output).__name__} "
                             f"{tuple(getattr(output, 'shape', ()))}")
        self.activations = output.detach()
        if output.requires_grad:
            output.register_hook(self._save_gradient)

    def _save_gradient(self, grad: Tensor) -> None:
        self.gradients = grad.detach()

    def __call__(self, x: Tensor, target: int | Sequence[int] | Tensor | None = None,
                 upsample: bool = True) -> Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                self.gradients = None
                logits = self.model(x)
                if logits.dim() != 2:
                    raise ValueError(f"the model must return (N, classes) logits; got {tuple(logits.shape)}")
                if target is None:
                    idx = logits.argmax(dim=1)
                elif isinstance(target, int):
                    idx = torch.full((len(x),), target, dtype=torch.long, device=logits.device)
                else:
                    idx = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
                if len(idx) != len(x) or int(idx.min()) < 0 or int(idx.max()) >= logits.shape[1]:
                    raise ValueError(f"target={target!r}: need one class in [0, {logits.shape[1]}) per image")
                self.model.zero_grad(set_to_none=True)
                # in eval mode the samples do not interact, so the summed score gives each its own gradient
                logits.gather(1, idx[:, None]).sum().backward()
        finally:
            self.model.train(was_training)
        if self.gradients is None or self.activations is None:
            raise RuntimeError("the target layer was not reached by the forward/backward pass")
        self.target = idx.detach()
        self.raw = gradcam_formula(self.activations, self.gradients)
        maps = self.raw
        if upsample and maps.shape[-2:] != x.shape[-2:]:
            maps = F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return normalise_maps(maps)

    def remove(self) -> None:
        """Take the hooks off the target layer."""
        self._handle.remove()

    def __enter__(self) -> "GradCAM":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def mass_inside(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's total mass that lies inside the mask (N,): 1 = all on the object.
    Maps with zero mass give NaN."""
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return inside / total.where(total > 0, torch.full_like(total, float("nan")))


def map_area(maps: Tensor, level: float = 0.5) -> Tensor:
    """Fraction of pixels of each normalised map at or above ``level`` (N,): how broad the map is."""
    return (maps >= level).flatten(1).float().mean(1)


def pool_to_grid(maps: Tensor, grid: int) -> Tensor:
    """Average (N, H, W) maps over a ``grid`` x ``grid`` partition of the image -> (N, grid, grid).

    With H and W multiples of ``grid`` every cell is the mean of an equal block of pixels, so a
    map's share of mass in each cell is kept exactly; this is how maps of different layers (8 x 8,
    4 x 4, ...) and the pixel masks are brought to one resolution before they are compared.

    Raises:
        ValueError: ``grid`` < 1, or H or W not a multiple of ``grid``.
    """
    if grid < 1 or maps.shape[-2] % grid or maps.shape[-1] % grid:
        raise ValueError(f"grid={grid}: must be >= 1 and divide the map size {tuple(maps.shape[-2:])}")
    return F.adaptive_avg_pool2d(maps[:, None].float(), grid)[:, 0]


def localisation(raw: Tensor, masks: Tensor, grid: int) -> dict[str, Tensor]:
    """How much of each Grad-CAM map lies on the object, at one common ``grid`` resolution.

    Args:
        raw: (N, h, w) non-negative maps at the layer's own resolution (``GradCAM.raw``; not
            min-max normalised, so that the mass shares are those of the map itself).
        masks: (N, H, W) object masks in [0, 1] at the image's resolution.
        grid: the common grid (it must divide h, w, H and W).

    Returns per image (N,): ``energy`` (share of the pooled map's mass in the pooled mask,
    sum m_c M_c / sum m_c over cells c, with M_c the share of cell c covered by the object),
    ``area`` (the mask's mean cover of the cells, i.e. the object's share of the image: what a
    map spread evenly over the grid gets as ``energy``) and ``breadth`` (the map's effective share
    of the grid, (sum m_c)^2 / (G sum m_c^2) with G = grid^2: 1 for an even map, 1/G for a map on
    one cell). Maps with no mass give NaN.
    """
    m = pool_to_grid(raw, grid).flatten(1).double()
    k = pool_to_grid(masks, grid).flatten(1).double()
    total = m.sum(1)
    ok = total > 0
    safe = total.where(ok, torch.ones_like(total))
    nan = torch.full_like(total, float("nan"))
    energy = ((m * k).sum(1) / safe).where(ok, nan)
    breadth = (total ** 2 / (m.shape[1] * (m ** 2).sum(1).where(ok, torch.ones_like(total)))).where(ok, nan)
    return {"energy": energy, "area": k.mean(1), "breadth": breadth}
