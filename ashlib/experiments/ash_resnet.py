"""ASH in residual networks (Lee et al., NeurIPS 2022, appendix C, D, H, I).

Two registered experiments share one run function:

- ``ash-resnet``: a pre-activation ResNet trained with ReLU, Swish and ASH (Supp. Fig. 1:
  training curves; App. I / Supp. Fig. 9: the learned z_k by depth; Property 2), over seeds.
- ``ash-ablation``: the same network with ASH, Leaky ASH and F-ASH-10/50/90 (App. H, Supp.
  Fig. 8: validation loss by epoch).

Each run trains one network per (seed, activation) with :func:`ashlib.train.fit`, evaluating
the held-out split after every epoch; records the learned ``z``/``k``/``alpha`` of every ASH
site after every epoch; and at the end measures, with forward hooks, the fraction of each
site's inputs that its gate lets through (:func:`ashlib.metrics.active_fractions`) on
``n_probe`` held-out images. All activations of one seed start from the same random state.

Profiles:

- ``quick`` (book scale, CPU): the procedural shapes set (:mod:`ashlib.data.shapes`, preset
  ``quick``) with 3,000 training and 500 test images of 32 x 32 pixels, a pre-activation
  ResNet-8 of widths 8/16/32 whose stem (3x3 conv with stride 2, then a 2x2 max-pool, as in
  ImageNet ResNets) brings the maps to 8 x 8, Adam (lr 2e-3), batch 64, 12 epochs; seeds 0
  and 1 for ``ash-resnet``, seed 0 for ``ash-ablation`` (five ASH variants are the CPU
  budget's largest item).
- ``paper``: CIFAR-10 (read from ``data_root``, default ``$ASHLIB_DATA`` or ``data/``), the
  bottleneck pre-activation ResNet-164, batch 32 and Adam with its default parameters
  (lr 1e-3, App. A), 100 epochs (the appendix gives no number of epochs), seeds 0, 1, 2, on
  the best available device. The appendix's own runs used ImageNet, which cannot be
  obtained offline; ``arch="wrn"`` gives WRN-28-10 instead.

The validation split is the data set's test split (there is no separate validation set in
the appendix's description); every number says so.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data import load_cifar10, load_digits
from ..data.shapes import load_shapes
from ..analysis.metrics import active_fractions, ash_thresholds
from ..analysis.trajectories import RunTrajectories, record_activation_parameters, thin_records
from ..models import PreActResNet, WideResNet
from ..train import fit, seed_everything, select_device, set_threads
from .registry import ExperimentResult, environment, register
from .runstore import RunStore
from .labels import LABELS, label
from .report import mean_sd_se
from .verdicts import gate_adaptive_verdict

__all__ = ["AshResNetConfig", "AshAblationConfig", "AshResNetResult", "run_ash_resnet", "build_model", "load_data",
           "probe_images", "gradcam_study", "gradcam_verdict", "verdict_rules", "label",
           "spearman"]

ABLATION_ACTS = ("ash", "leaky-ash", "fixed-ash-10", "fixed-ash-50", "fixed-ash-90")


@dataclass(frozen=True)
class AshResNetConfig:
    """Settings of ``ash-resnet`` (and, with other activations, ``ash-ablation``).

    ``dataset``: ``shapes`` (procedural, offline), ``digits`` (scikit-learn, offline, grey) or
    ``cifar10`` (files under ``data_root``). ``arch``: ``resnet`` (pre-activation, ``depth``,
    ``widths``, ``stem_stride``) or ``wrn`` (``depth``, ``widen_factor``). ``act_lr``: learning
    rate of the activation parameters (z, alpha, slope) in their own parameter group; 0 (default)
    trains them with ``lr``, as the appendix does (one Adam at its defaults for everything), so
    a nonzero value departs from the paper and is reported with the results.
    """

    profile: str = "quick"
    dataset: str = "shapes"
    shapes_preset: str = "quick"
    data_root: str = ""
    image_size: int = 32
    n_train: int = 3000
    n_test: int = 500
    arch: str = "resnet"
    depth: int = 8
    block: str = "auto"
    widths: tuple[int, ...] = (8, 16, 32)
    widen_factor: int = 10
    stem_stride: int = 2
    stem_pool: bool = True
    acts: tuple[str, ...] = ("relu", "swish", "ash")
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    seeds: tuple[int, ...] = (0, 1)
    n_probe: int = 500
    act_lr: float = 0.0
    device: str = "cpu"
    threads: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "AshResNetConfig":
        """``quick``: shapes 32 px (preset quick), ResNet-8 (8/16/32, stem stride 2 + pool), 12 epochs, seeds 0, 1.
        ``paper``: CIFAR-10, ResNet-164, batch 32, Adam lr 1e-3, 100 epochs, seeds 0-2, device auto."""
        if profile == "quick":
            return cls(profile="quick")
        if profile == "paper":
            return cls(profile="paper", dataset="cifar10", n_train=0, n_test=0, depth=164, widths=(16, 32, 64),
                       stem_stride=1, stem_pool=False, epochs=100, batch_size=32, lr=1e-3, seeds=(0, 1, 2), n_probe=2000,
                       device="auto")
        if profile == "book":  # provisional: the book settings are being sized (issue 12, part 7)
            return cls(profile="book", seeds=(0, 1, 2))
        raise ValueError(f"profile={profile!r}; allowed: quick, book, paper")

    def describe(self) -> str:
        """One line: data, network, training and seeds (printed with every result)."""
        net = (f"pre-activation ResNet-{self.depth} (widths {'/'.join(map(str, self.widths))}, stem stride "
               f"{self.stem_stride}{' + 2x2 max-pool' if self.stem_pool else ''})" if self.arch == "resnet" else f"WRN-{self.depth}-{self.widen_factor}")
        data = self.dataset + (f" {self.image_size}px, {self.n_train} train / {self.n_test} test"
                               if self.dataset != "cifar10" else " (50,000 train / 10,000 test)")
        return (f"{data}; {net}; {self.optimizer} lr {self.lr:g}, batch {self.batch_size}, {self.epochs} epochs; "
                f"seeds {', '.join(map(str, self.seeds))}; profile {self.profile}")


@dataclass(frozen=True)
class AshAblationConfig(AshResNetConfig):
    """``ash-ablation``: the ``ash-resnet`` settings with ASH, L-ASH and F-ASH-10/50/90."""

    acts: tuple[str, ...] = ABLATION_ACTS

    @classmethod
    def for_profile(cls, profile: str) -> "AshAblationConfig":
        base = dataclasses.asdict(AshResNetConfig.for_profile(profile))
        base["acts"] = ABLATION_ACTS
        if profile == "quick":
            base["seeds"] = (0,)  # CPU budget: one seed for the five variants (two for ash-resnet)
        return cls(**base)


def _data_root(cfg: AshResNetConfig) -> str:
    return cfg.data_root or os.environ.get("ASHLIB_DATA", "data")


def load_data(cfg: AshResNetConfig):
    """(train, test, in_channels) for the config's dataset."""
    if cfg.dataset == "shapes":
        tr, te = load_shapes(cfg.n_train, cfg.n_test, cfg.image_size, seed=0, preset=cfg.shapes_preset)
        return tr, te, 3
    if cfg.dataset == "digits":
        tr, te = load_digits(image_size=cfg.image_size, seed=0)
        return tr, te, 1
    if cfg.dataset == "cifar10":
        root = _data_root(cfg)
        return load_cifar10(root, train=True), load_cifar10(root, train=False), 3
    raise ValueError(f"dataset={cfg.dataset!r}; allowed: shapes, digits, cifar10")


def build_model(cfg: AshResNetConfig, act: str, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """The config's network with activation ``act`` at every site."""
    if cfg.arch == "resnet":
        return PreActResNet(cfg.depth, act, block=cfg.block, widths=cfg.widths, num_classes=num_classes, in_channels=in_channels,
                            stem_stride=cfg.stem_stride, stem_pool=cfg.stem_pool)
    if cfg.arch == "wrn":
        return WideResNet(cfg.depth, cfg.widen_factor, act, num_classes=num_classes, in_channels=in_channels)
    raise ValueError(f"arch={cfg.arch!r}; allowed: resnet, wrn")


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for t in range(i, j + 1):
                r[order[t]] = (i + j) / 2
            i = j + 1
        return r

    if len(x) != len(y) or len(x) < 2:
        return float("nan")
    rx, ry = ranks(list(x)), ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def _setup_key(cfg: AshResNetConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    for k in ("acts", "profile", "seeds"):
        d.pop(k)
    return d


@dataclass
class AshResNetResult(RunTrajectories, ExperimentResult):
    """Runs of ``ash-resnet`` / ``ash-ablation``: one row per (activation, seed).

    ``rows[i]``: act, seed, history (fit's per-epoch dicts), thresholds (per epoch, the ASH
    sites' z, k, alpha), active (per site: active fraction and its spread over samples),
    test_acc, test_loss (of the last epoch), seconds_per_epoch. ``models[(act, seed)]`` keeps the
    trained networks (not written to disk).
    """

    config: AshResNetConfig
    name: str = "ash-resnet"
    rows: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple[str, int], nn.Module] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ summaries
    def acts(self) -> list[str]:
        """Activations in run order."""
        return [a for a in self.config.acts if any(r["act"] == a for r in self.rows)]

    def curves(self) -> list[dict[str, Any]]:
        """Per (activation, epoch): mean and sd over seeds of train_loss, val_loss, val_acc."""
        out = []
        for act in self.acts():
            runs = [r for r in self.rows if r["act"] == act]
            for e in range(min(len(r["history"]) for r in runs)):
                row: dict[str, Any] = {"act": act, "epoch": e + 1}
                for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
                    s = mean_sd_se(r["history"][e][key] for r in runs)
                    row[key], row[key + "_sd"] = s["mean"], s["sd"]
                out.append(row)
        return out

    def summary(self, target_acc: float | None = None) -> list[dict[str, Any]]:
        """Per activation, over seeds: final validation accuracy (%) and loss, the lowest validation
        loss, the mean validation and training loss over all epochs (area under the curve: lower means
        it got low earlier), the first epoch at which validation accuracy reached ``target_acc``
        (default: 90 % of the best final mean accuracy of all activations), and seconds per epoch."""
        curves = self.curves()
        finals = {}
        for act in self.acts():
            runs = [r for r in self.rows if r["act"] == act]
            finals[act] = sum(r["history"][-1]["val_acc"] for r in runs) / len(runs)
        if target_acc is None and finals:
            target_acc = 0.9 * max(finals.values())
        out = []
        for act in self.acts():
            runs = [r for r in self.rows if r["act"] == act]
            acc = mean_sd_se(100 * r["history"][-1]["val_acc"] for r in runs)
            vl = mean_sd_se(r["history"][-1]["val_loss"] for r in runs)
            vmin = mean_sd_se(min(h["val_loss"] for h in r["history"]) for r in runs)
            auc = mean_sd_se(sum(h["val_loss"] for h in r["history"]) / len(r["history"]) for r in runs)
            tauc = mean_sd_se(sum(h["train_loss"] for h in r["history"]) / len(r["history"]) for r in runs)
            mean_curve = [c["val_acc"] for c in curves if c["act"] == act]
            reach = next((i + 1 for i, v in enumerate(mean_curve) if v >= (target_acc or 0)), None)
            out.append({"act": label(act), "val_acc": acc["mean"], "val_acc_sd": acc["sd"],
                        "val_loss": vl["mean"], "val_loss_sd": vl["sd"], "min_val_loss": vmin["mean"],
                        "mean_val_loss": auc["mean"], "mean_val_loss_sd": auc["sd"], "mean_train_loss": tauc["mean"],
                        "epochs_to_target": reach, "target_acc": 100 * (target_acc or 0), "seeds": acc["n"],
                        "sec_per_epoch": sum(r["seconds_per_epoch"] for r in runs) / len(runs)})
        return out

    def thresholds(self, epoch: int | None = None) -> list[dict[str, Any]]:
        """The learned z, k, alpha of every ASH-type site with its measured active fraction, per
        (activation, seed, site), after ``epoch`` (default: the last)."""
        out = []
        for r in self.rows:
            if not r["thresholds"] or not r["thresholds"][-1]:
                continue
            th = r["thresholds"][-1 if epoch is None else epoch - 1]
            active = {a["site"]: a for a in r["active"]}
            for t in th:
                out.append({"act": label(r["act"]), "seed": r["seed"], **t,
                            "active": active[t["site"]]["active"] if t["site"] in active else None})
        return out

    def activity(self) -> list[dict[str, Any]]:
        """Active fraction per (activation, site), mean over seeds, with the mean spread over samples."""
        out = []
        for act in self.acts():
            runs = [r for r in self.rows if r["act"] == act]
            for i, site in enumerate(runs[0]["active"]):
                vals = [r["active"][i] for r in runs]
                out.append({"act": label(act), "site": site["site"], "name": site["name"], "depth": site["depth"],
                            "active": sum(v["active"] for v in vals) / len(vals),
                            "sd_over_samples": sum(v["sd_over_samples"] for v in vals) / len(vals)})
        return out

    def depth_trend(self) -> list[dict[str, Any]]:
        """Per (ASH-type activation, seed): Spearman correlation of depth with the learned z and with the
        measured active fraction, the mean implied k and measured active fraction in the first and last
        third of the sites, and the largest |z - z0|."""
        out = []
        for r in self.rows:
            if not r["thresholds"] or not r["thresholds"][-1] or r["act"].startswith("fixed"):
                continue
            th = r["thresholds"][-1]
            z0 = r["z0"]
            act = {a["site"]: a["active"] for a in r["active"]}
            depth = [t["depth"] for t in th]
            zs = [t["z"] for t in th]
            ks = [t["k"] for t in th]
            fr = [act[t["site"]] for t in th]
            third = max(1, len(th) // 3)
            out.append({"act": label(r["act"]), "seed": r["seed"], "sites": len(th),
                        "rho_depth_z": spearman(depth, zs), "rho_depth_active": spearman(depth, fr),
                        "k_first_third": sum(ks[:third]) / third, "k_last_third": sum(ks[-third:]) / third,
                        "active_first_third": sum(fr[:third]) / third, "active_last_third": sum(fr[-third:]) / third,
                        "max_abs_dz": max(abs(z - z0) for z in zs)})
        return out

    def max_movement(self, act: str, quantities: tuple[str, ...] = ("z", "alpha", "slope")) -> float | None:
        """The largest movement of ``act``'s adaptive parameters (None: not recorded or none)."""
        moves = [m["movement"] for m in self.movement() if m["act"] == act and m["quantity"] in quantities]
        return max(moves) if moves else None

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        runs = [{k: v for k, v in r.items() if k not in ("history", "thresholds", "active", "trajectory")}
                for r in self.rows]
        return {"runs": runs, "summary": self.summary(), "curves": self.curves(), "thresholds": self.thresholds(),
                "activity": self.activity(), "depth_trend": self.depth_trend(), "verdicts": self.verdicts(),
                "trajectories": self.trajectories(), "movement": self.movement()}

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.name, "config": dataclasses.asdict(self.config), "setup": self.config.describe(),
                "env": self.env, "summary": self.summary(), "rows": self.rows}

    def figures(self) -> dict[str, Any]:
        from . import plotting_deep as P  # noqa: PLC0415

        figs = {"curves": P.training_curves(self)}
        if self.thresholds():
            figs["depth"] = P.thresholds_by_depth(self)
        traj = self.trajectories()
        if traj:
            from .plotting_params import trajectory_figure  # noqa: PLC0415

            panels = sorted({(r["act"], r["quantity"]) for r in traj}, key=str)
            if len(panels) <= 12:
                figs["parameter_trajectories"] = trajectory_figure(
                    traj, panel=("act", "quantity"), line=("site",),
                    title="adaptive parameters over training (mean over seeds; band: min-max over channels)")
        return figs

    # ------------------------------------------------------------------ verdicts
    def verdicts(self) -> list[dict[str, str]]:
        """Rule-based verdicts at this run's scale (rules in :func:`verdict_rules`)."""
        acts = set(self.acts())
        out = []
        if "ash" in acts and acts & {"relu", "swish", "silu"}:
            out.append(self._verdict_curves())
        if {"ash", "leaky-ash"} <= acts or any(a.startswith("fixed-ash") for a in acts):
            out.append(self._verdict_ablation())
        if "ash" in acts:
            out.append(self._verdict_depth())
        if "ash" in acts and "relu" in acts:
            out.append(self._verdict_p2())
        return out

    def _by_act(self) -> dict[str, dict[str, Any]]:
        return {s["act"]: s for s in self.summary()}

    def _verdict_curves(self) -> dict[str, str]:
        s = self._by_act()
        others = [a for a in s if a != "ASH" and not a.startswith(("F-ASH", "L-ASH"))]
        acc_best = all(s["ASH"]["val_acc"] > s[o]["val_acc"] for o in others)
        loss_best = all(s["ASH"]["mean_train_loss"] < s[o]["mean_train_loss"] for o in others)
        ev = "; ".join(f"{a}: val acc {s[a]['val_acc']:.1f} ± {s[a]['val_acc_sd'] or 0:.1f} %, mean train loss "
                       f"{s[a]['mean_train_loss']:.3f}" for a in ["ASH", *others])
        verdict = ("reproduced" if acc_best and loss_best else "not reproduced" if not (acc_best or loss_best)
                   else "mixed")
        moved = self.max_movement("ash")
        if moved is not None:
            ev += f"; largest movement of ASH's z/alpha {moved:.3f}"
        return {"claim": "ASH-CURVES", "evidence": ev, "verdict": gate_adaptive_verdict(verdict, moved)}

    def _verdict_ablation(self) -> dict[str, str]:
        s = self._by_act()
        checks: list[tuple[str, bool]] = []
        variants = [a for a in s if a == "ASH" or a.startswith(("L-ASH", "F-ASH"))]
        if "ASH" in s and len(variants) > 1:
            checks.append(("ASH lowest min val loss", all(s["ASH"]["min_val_loss"] <= s[a]["min_val_loss"]
                                                           for a in variants)))
            checks.append(("ASH earliest (lowest mean val loss)", all(s["ASH"]["mean_val_loss"] <= s[a]["mean_val_loss"]
                                                                      for a in variants)))
        if "ASH" in s and "L-ASH" in s:
            checks.append(("L-ASH slower than ASH", s["L-ASH"]["mean_val_loss"] > s["ASH"]["mean_val_loss"]))
        fixed = [a for a in s if a.startswith("F-ASH")]
        if "ASH" in s and fixed:
            checks.append(("every F-ASH-k above ASH", all(s[a]["min_val_loss"] > s["ASH"]["min_val_loss"]
                                                          for a in fixed)))
        if {"F-ASH-10", "F-ASH-50", "F-ASH-90"} <= set(s):
            checks.append(("F-ASH-10 and -90 above F-ASH-50",
                           s["F-ASH-10"]["min_val_loss"] > s["F-ASH-50"]["min_val_loss"]
                           and s["F-ASH-90"]["min_val_loss"] > s["F-ASH-50"]["min_val_loss"]))
        hits = sum(c[1] for c in checks)
        ev = ", ".join(f"{n}: {'yes' if ok else 'no'}" for n, ok in checks)
        ev += "; min val loss " + ", ".join(f"{a} {s[a]['min_val_loss']:.3f}" for a in variants)
        # ASH against its fixed-k variants only compares something if ASH's threshold moved
        moved = self.max_movement("ash", ("z",))
        if moved is not None:
            ev += f"; largest movement of ASH's z {moved:.3f}"
        return {"claim": "ASH-ABL", "evidence": ev, "verdict": gate_adaptive_verdict(_share(hits, len(checks)), moved)}

    def _verdict_depth(self) -> dict[str, str]:
        trend = [t for t in self.depth_trend() if t["act"] == "ASH"]
        if not trend:
            return {"claim": "ASH-DEPTH", "evidence": "no ASH runs", "verdict": "not rerun here"}
        # the claim: z grows with depth (broad near the input, narrow near the output)
        ok = [t["rho_depth_z"] > 0 and t["k_first_third"] > t["k_last_third"] for t in trend]
        opposite = [t["rho_depth_z"] < 0 and t["k_first_third"] < t["k_last_third"] for t in trend]
        ev = "; ".join(f"seed {t['seed']}: rho(depth, z) {t['rho_depth_z']:+.2f}, implied k first/last third "
                       f"{100 * t['k_first_third']:.0f}/{100 * t['k_last_third']:.0f} %, measured active "
                       f"{100 * t['active_first_third']:.0f}/{100 * t['active_last_third']:.0f} %, max |dz| "
                       f"{t['max_abs_dz']:.2f}" for t in trend)
        verdict = ("reproduced" if all(ok) else "not reproduced" if all(opposite) else "mixed")
        # a depth pattern of z that z never left its start cannot show: gate on z's movement
        moved = self.max_movement("ash", ("z",))
        return {"claim": "ASH-DEPTH", "evidence": ev, "verdict": gate_adaptive_verdict(verdict, moved)}

    def _verdict_p2(self) -> dict[str, str]:
        act = self.activity()
        ash = [a for a in act if a["act"] == "ASH"]
        relu = [a for a in act if a["act"] == "ReLU"]
        lower = sum(a["sd_over_samples"] < b["sd_over_samples"] for a, b in zip(ash, relu))
        ev = (f"sd over images of the per-image active fraction lower for ASH than for ReLU at {lower} of "
              f"{len(ash)} sites (mean {sum(a['sd_over_samples'] for a in ash) / len(ash):.3f} vs "
              f"{sum(a['sd_over_samples'] for a in relu) / len(relu):.3f})")
        verdict = "reproduced" if lower == len(ash) else "not reproduced" if lower == 0 else "mixed"
        return {"claim": "ASH-P2", "evidence": ev, "verdict": verdict}


def verdict_rules() -> str:
    """The rules behind :meth:`AshResNetResult.verdicts`, as text for the notebooks."""
    return (
        "ASH-CURVES: reproduced if ASH has the highest final validation accuracy and the lowest mean training loss "
        "over the epochs of all non-ASH-variant activations; not reproduced if neither; mixed if one.\n"
        "ASH-ABL: five checks (ASH lowest min val loss; ASH lowest mean val loss over epochs, i.e. earliest; L-ASH's "
        "mean val loss above ASH's; every F-ASH-k's min val loss above ASH's; F-ASH-10 and F-ASH-90 above F-ASH-50): "
        "all -> reproduced, none -> not reproduced, else mixed.\n"
        "ASH-DEPTH: per seed, z must rise with depth (Spearman rho > 0) and the implied k of the first third of the "
        "ASH sites must exceed that of the last third; all seeds -> reproduced, the opposite in all -> not "
        "reproduced, else mixed.\n"
        "ASH-P2: the spread over images of the per-image active fraction is lower for ASH than for ReLU at every "
        "site -> reproduced; at none -> not reproduced; else mixed.\n"
        "Static parameters: ASH-CURVES (any of ASH's z and alpha), ASH-ABL and ASH-DEPTH (ASH's z) read 'not tested: "
        "the parameter stayed at its start' when that parameter moved by less than 0.05 at every site "
        "(gate_adaptive_verdict in ashlib.experiments.verdicts).")


def _share(hits: int, total: int) -> str:
    if total == 0:
        return "not rerun here"
    return "reproduced" if hits == total else ("not reproduced" if hits == 0 else "mixed")


def run_ash_resnet(config: AshResNetConfig, progress: bool = True, reuse: AshResNetResult | None = None,
                   name: str = "ash-resnet", keep_models: bool = True, store: RunStore | None = None) -> AshResNetResult:
    """Train every (seed, activation) of ``config``; see the module docstring.

    ``store``: each (activation, seed) network is a unit (see :mod:`ashlib.experiments.runstore`):
    its row and trained weights are stored when it ends, and it is checkpointed after every
    epoch while it trains.

    ``reuse``: a previous result with the same settings (all fields but ``acts``, ``seeds`` and
    ``profile``): its runs of the same (activation, seed) are copied instead of retrained (the
    training is deterministic given the seed, so this is the run that would be repeated).
    """
    old_threads = set_threads(config.threads)
    dev = select_device(config.device)
    result = AshResNetResult(config=config, name=name, env=environment(dev))
    store = store if store is not None else RunStore.disabled()
    try:
        train, test, in_ch = load_data(config)
        n_probe = min(config.n_probe, len(test))
        probe = test[torch.arange(n_probe)][0] if hasattr(test, "__getitem__") else None
        cached = {}
        if reuse is not None and _setup_key(reuse.config) == _setup_key(config):
            cached = {(r["act"], r["seed"]): r for r in reuse.rows}
        for seed in config.seeds:
            for act in config.acts:
                if (act, seed) in cached:
                    result.rows.append(cached[(act, seed)])
                    if (act, seed) in reuse.models:
                        result.models[(act, seed)] = reuse.models[(act, seed)]
                    continue
                unit = f"{act}-seed{seed}"

                def train_one(act=act, seed=seed, unit=unit) -> dict[str, Any]:
                    seed_everything(seed)
                    model = build_model(config, act, in_ch)
                    z0 = next((t["z"] for t in ash_thresholds(model)), float("nan"))
                    t0 = time.perf_counter()
                    start = record_activation_parameters(0, model)
                    res = fit(model, train, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                              optimizer=config.optimizer, weight_decay=config.weight_decay, val_data=test,
                              device=dev, seed=seed, progress=progress, desc=f"{label(act)} seed {seed}",
                              checkpoint=store.checkpoint(unit), checkpoint_interval=store.checkpoint_seconds,
                              record_epoch=lambda e, m: (ash_thresholds(m), record_activation_parameters(e, m)),
                              act_lr=config.act_lr or None)
                    wall = time.perf_counter() - t0
                    active = active_fractions(res.model, probe, per_sample=True)
                    last = res.history[-1]
                    row = {
                        "act": act, "seed": seed, "history": res.history, "thresholds": [r[0] for r in res.records],
                        "trajectory": thin_records([start, *(r[1] for r in res.records)]), "z0": z0,
                        "active": active, "test_acc": last["val_acc"], "test_loss": last["val_loss"],
                        "seconds_per_epoch": sum(h["seconds"] for h in res.history) / len(res.history),
                        "wall_seconds": wall, "parameters": sum(p.numel() for p in model.parameters()),
                    }
                    state = {k: v.cpu() for k, v in res.model.state_dict().items()} if store.enabled else None
                    return {"row": row, "weights": state, "model": res.model}

                def store_one(unit=unit, train_one=train_one) -> dict[str, Any]:
                    done = train_one()
                    store.put(unit, {"row": done["row"], "weights": done["weights"]})
                    return done

                done = store.get(unit) or store_one()
                model = done.get("model")
                if model is None:  # resumed: rebuild the trained network from its stored weights
                    model = build_model(config, act, in_ch)
                    model.load_state_dict(done["weights"])
                result.rows.append(done["row"])
                if keep_models:
                    result.models[(act, seed)] = model.cpu().eval()
    finally:
        torch.set_num_threads(old_threads)
    return result


@register("ash-resnet", "ASH appendix C/I: pre-activation ResNet with ReLU, Swish and ASH (curves, learned z_k "
          "by depth, active fractions)", AshResNetConfig)
def _run_resnet(config: AshResNetConfig, progress: bool = True, store: RunStore | None = None) -> AshResNetResult:
    return run_ash_resnet(config, progress, name="ash-resnet", store=store)


@register("ash-ablation", "ASH appendix H: ASH vs L-ASH vs F-ASH-10/50/90 (validation loss curves)",
          AshAblationConfig)
def _run_ablation(config: AshAblationConfig, progress: bool = True, store: RunStore | None = None) -> AshResNetResult:
    return run_ash_resnet(config, progress, name="ash-ablation", store=store)


# ---------------------------------------------------------------------- Grad-CAM study (App. D, Supp. Fig. 2)


def probe_images(cfg: AshResNetConfig, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The first ``n`` held-out images of the config's data set (floats in [0, 1]), their labels and,
    for the shapes set, the object masks (the ground truth of where the class evidence is)."""
    if cfg.dataset == "shapes":
        from ..data.shapes import SHAPES_PRESETS, make_shapes  # noqa: PLC0415

        # the same draw as load_shapes' test split (seed + 1_000_003), first n images
        imgs, labels, masks = make_shapes(cfg.n_test, cfg.image_size, 0 + 1_000_003, return_masks=True,
                                          **SHAPES_PRESETS[cfg.shapes_preset])
        return imgs[:n].float() / 255, labels[:n], masks[:n]
    _, test, _ = load_data(cfg)
    x, y = test[torch.arange(n)]
    return x, y, None


def gradcam_study(result: AshResNetResult, images: torch.Tensor, labels: torch.Tensor,
                  masks: torch.Tensor | None = None, seed: int | None = None,
                  layers: tuple[str, ...] = ("stage1", "stage2", "act")) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Grad-CAM maps of the trained networks of ``result`` (one per activation, seed ``seed``, default
    the first) at an early and the last layer, for the true class of each image.

    Returns ``(maps, rows)``: ``maps["ASH stage1"]`` is (N, H, W) in [0, 1] (upsampled to the input);
    ``rows`` give per (activation, layer) the mean area of the map at or above 0.5 (how broad it is)
    and, with masks, the mean share of the map's mass on the object (how localised on it)."""
    from ..analysis.gradcam import GradCAM, map_area, mass_inside  # noqa: PLC0415

    seed = result.config.seeds[0] if seed is None else seed
    maps: dict[str, torch.Tensor] = {}
    rows = []
    for act in result.acts():
        model = result.models.get((act, seed))
        if model is None:
            continue
        for layer in layers:
            with GradCAM(model, model.get_submodule(layer)) as cam:
                m = cam(images, target=labels)
            key = f"{label(act)} {layer}"
            maps[key] = m
            row = {"act": label(act), "layer": layer, "map_side": int(cam.raw.shape[-1]),
                   "area_ge_0.5": float(map_area(m).mean())}
            if masks is not None:
                row["mass_on_object"] = float(torch.nanmean(mass_inside(m, masks)))
                row["object_area"] = float(masks.flatten(1).mean(1).mean())
            rows.append(row)
    return maps, rows


def gradcam_verdict(rows: list[dict[str, Any]], early: str = "stage1", late: str = "act") -> dict[str, str]:
    """ASH-GRADCAM, two checks on ASH's maps: (a) broad early, narrow late: the area where the map is at
    least 0.5 is larger at the early layer than at the last; (b) localised on the object at the end: the
    share of the last-layer map's mass on the object exceeds 1.1 times the object's share of the image
    (a map that ignores the object gets about 1.0 times). Both -> reproduced, neither -> not reproduced,
    one -> mixed. Without masks only (a) is checked."""
    r = {(x["act"], x["layer"]): x for x in rows}
    if ("ASH", early) not in r or ("ASH", late) not in r:
        return {"claim": "ASH-GRADCAM", "evidence": "no ASH network", "verdict": "not rerun here"}
    a = r[("ASH", early)]["area_ge_0.5"] > r[("ASH", late)]["area_ge_0.5"]
    ev = f"area >= 0.5 at {early}/{late}: " + ", ".join(
        f"{act} {r[(act, early)]['area_ge_0.5']:.2f}/{r[(act, late)]['area_ge_0.5']:.2f}"
        for act in dict.fromkeys(x["act"] for x in rows))
    checks = [a]
    if "mass_on_object" in r[("ASH", late)]:
        ash = r[("ASH", late)]
        checks.append(ash["mass_on_object"] > 1.1 * ash["object_area"])
        ev += (f"; mass on the object at {late} (object covers {ash['object_area']:.2f} of the image): "
               + ", ".join(f"{x['act']} {x['mass_on_object']:.2f}" for x in rows if x["layer"] == late))
    hits = sum(checks)
    verdict = "reproduced" if hits == len(checks) else "not reproduced" if hits == 0 else "mixed"
    return {"claim": "ASH-GRADCAM", "evidence": ev, "verdict": verdict}
