"""The adaptive parameters of a network's activations, recorded over training.

Every adaptive activation of :mod:`ashlib.modules` stores its parameters under fixed names:
``log_alpha`` (alpha of ASH, L-ASH, F-ASH-k, adaptive Gumbel and adaptive ReLU), ``z_param``
(the threshold z_k of ASH and L-ASH), ``log_slope`` (the slope a of L-ASH) and ``beta_param``
(Swish's beta); ``torch.nn.PReLU`` keeps its slope as ``weight``. Only trainable ones
(``nn.Parameter``, not buffers) count: F-ASH-k's frozen z is not adaptive.

- :func:`activation_parameters`: the current values, per site and quantity, in the papers'
  units (alpha, not log alpha).
- :func:`record_activation_parameters`: a summary (mean, min, max, n) per site and quantity;
  its signature fits ``ashlib.train.fit(record_epoch=...)``, so a run gets one summary per epoch.
- :func:`thin_records`: keeps at most ~100 evenly spaced epochs of a long run.
- :func:`trajectory_rows`: the start summary and the per-epoch summaries as long-format rows
  (epoch, site, quantity, mean, min, max, n), the input of the trajectory figure
  (:func:`ashlib.experiments.plotting_params.trajectory_figure`).
- :func:`parameter_movement`: how far each quantity moved from its start, on the scale on which
  it is trained (log for the positive ones); :data:`MOVE_THRESHOLD` is the smallest movement
  that counts as "moved" for the verdicts (:func:`ashlib.experiments.verdicts.gate_adaptive_verdict`).
- :func:`activation_parameter_groups`: optimiser parameter groups with a separate learning rate
  for the activation parameters (``fit(act_lr=...)``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["RunTrajectories", "ACT_PARAMETERS", "MOVE_THRESHOLD", "activation_parameters", "activation_parameter_names",
           "record_activation_parameters", "thin_records", "trajectory_rows", "parameter_movement", "activation_parameter_groups"]

#: stored name -> (quantity, True when stored as a log and shown through exp)
ACT_PARAMETERS: dict[str, tuple[str, bool]] = {
    "log_alpha": ("alpha", True),
    "z_param": ("z", False),
    "log_slope": ("slope", True),
    "beta_param": ("beta", False),
}

#: positive quantities whose movement is measured in log units
_LOG_SCALE = {"alpha", "slope"}

#: A quantity "moved" when some channel (or the mean) changed by at least this much on the scale
#: it is trained on: log alpha or log slope (0.05 is a 5 % change of alpha), z and beta in their
#: own units (0.05 standard deviations of the feature map moves the kept share of a normal map at
#: z = 0 by about 2 percentage points). The LeNet5 runs that issue 12 reports as static moved by
#: at most 0.004 in log alpha, more than ten times less.
MOVE_THRESHOLD = 0.05


def _sites(model: nn.Module) -> Iterable[tuple[str, nn.Module, str, str, bool]]:
    for site, module in model.named_modules():
        for stored, (quantity, is_log) in ACT_PARAMETERS.items():
            p = module._parameters.get(stored)
            if isinstance(p, nn.Parameter) and p.requires_grad:
                yield site, module, stored, quantity, is_log
        if isinstance(module, nn.PReLU) and module.weight.requires_grad:
            yield site, module, "weight", "slope", False


def activation_parameter_names(model: nn.Module) -> list[str]:
    """Qualified names (as in ``model.named_parameters()``) of every trainable activation parameter."""
    return [f"{site}.{stored}" if site else stored for site, _, stored, _, _ in _sites(model)]


def activation_parameters(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """``{site: {quantity: 1-D float64 tensor}}`` of every trainable activation parameter, in the
    papers' units (alpha and slope through exp), detached, on the CPU, in module order."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for site, module, stored, quantity, is_log in _sites(model):
        v = getattr(module, stored).detach().to("cpu", torch.float64).reshape(-1)
        out.setdefault(site, {})[quantity] = v.exp() if is_log else v.clone()
    return out


def record_activation_parameters(epoch: int, model: nn.Module) -> dict[str, Any]:
    """``{"epoch": epoch, "params": {site: {quantity: {"mean", "min", "max", "n"}}}}`` of the current
    values (plain floats), for ``fit(record_epoch=...)``; call it with epoch 0 before training for
    the start. For a positive quantity (alpha, slope) "mean" is the geometric mean (the mean on the
    log scale it is trained on)."""
    params: dict[str, dict[str, dict[str, float]]] = {}
    for site, values in activation_parameters(model).items():
        for quantity, v in values.items():
            mean = float(v.log().mean().exp()) if quantity in _LOG_SCALE else float(v.mean())
            params.setdefault(site, {})[quantity] = {"mean": mean, "min": float(v.min()), "max": float(v.max()),
                                                     "n": int(v.numel())}
    return {"epoch": int(epoch), "params": params}


def thin_records(records: list[dict[str, Any]], max_points: int = 101) -> list[dict[str, Any]]:
    """At most ``max_points`` of ``records`` (evenly spaced, always the first and the last), so that a
    2000-epoch run stores a readable trajectory rather than every epoch."""
    if max_points < 2:
        raise ValueError(f"max_points={max_points}; must be >= 2")
    n = len(records)
    if n <= max_points:
        return list(records)
    keep = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
    return [records[i] for i in keep]


def trajectory_rows(records: list[dict[str, Any]], **labels: Any) -> list[dict[str, Any]]:
    """Long-format rows ``{**labels, epoch, site, quantity, mean, min, max, n}`` of records made by
    :func:`record_activation_parameters` (the start at epoch 0, then ``FitResult.records``)."""
    rows = []
    for rec in records:
        for site, quantities in rec["params"].items():
            for quantity, s in quantities.items():
                rows.append({**labels, "epoch": rec["epoch"], "site": site, "quantity": quantity, **s})
    return rows


def _scale(quantity: str, value: float) -> float:
    return math.log(value) if quantity in _LOG_SCALE else value


def parameter_movement(rows: list[dict[str, Any]], keys: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """How far each (``keys``..., site, quantity) moved between its first and last recorded epoch.

    ``movement`` is the largest of |change| of the mean, the minimum and the maximum over the
    channels, on the trained scale (log for alpha and slope): a channel that moved shows even when
    the mean did not. ``moved`` compares it with :data:`MOVE_THRESHOLD`."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys) + (r["site"], r["quantity"]), []).append(r)
    out = []
    for key, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["epoch"])
        first, last = rs[0], rs[-1]
        q = first["quantity"]
        move = max(abs(_scale(q, last[s]) - _scale(q, first[s])) for s in ("mean", "min", "max"))
        out.append({**dict(zip(keys, key)), "site": first["site"], "quantity": q, "start": first["mean"],
                    "end": last["mean"], "end_min": last["min"], "end_max": last["max"],
                    "epochs": last["epoch"] - first["epoch"], "movement": move,
                    "scale": "log" if q in _LOG_SCALE else "linear", "moved": move >= MOVE_THRESHOLD})
    return out


def activation_parameter_groups(model: nn.Module, lr: float, act_lr: float | None) -> list[dict[str, Any]]:
    """Optimiser parameter groups: the activation parameters (see :data:`ACT_PARAMETERS`) with
    learning rate ``act_lr``, every other trainable parameter with ``lr``. With ``act_lr=None`` one
    group with ``lr`` (the papers' default: one learning rate for everything).

    Raises:
        ValueError: ``act_lr`` is not a finite number > 0.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if act_lr is None:
        return [{"params": params, "lr": lr}]
    if isinstance(act_lr, bool) or not isinstance(act_lr, (int, float)) or not math.isfinite(act_lr) or act_lr <= 0:
        raise ValueError(f"act_lr={act_lr!r} is out of range: it must be a finite number > 0 (or None)")
    named = dict(model.named_parameters())
    act_ids = {id(named[n]) for n in activation_parameter_names(model) if n in named}
    act = [p for p in params if id(p) in act_ids]
    rest = [p for p in params if id(p) not in act_ids]
    groups = [{"params": rest, "lr": lr}] if rest else []
    if act:
        groups.append({"params": act, "lr": float(act_lr), "activation": True})
    return groups


class RunTrajectories:
    """For experiment results whose ``rows`` each hold ``act``, ``seed`` and a ``trajectory``
    (records of :func:`record_activation_parameters`): the trajectories and their movement."""

    rows: list

    def trajectories(self) -> list[dict[str, Any]]:
        """Every adaptive parameter (z, alpha, slope) over training, long format: one row per (run,
        epoch, site, quantity)."""
        out = []
        for r in self.rows:
            out += trajectory_rows(r.get("trajectory", []), act=r["act"], seed=r["seed"])
        return out

    def movement(self) -> list[dict[str, Any]]:
        """Per (activation, seed, site, quantity): how far the parameter moved from its start."""
        return parameter_movement(self.trajectories(), keys=("act", "seed"))
