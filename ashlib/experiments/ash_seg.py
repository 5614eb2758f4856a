"""ASH in semantic segmentation (Lee et al., NeurIPS 2022, appendix E, Supp. Figs. 3-5; claim ASH-SEG).

The appendix trains U-Net, DeepLabV3+ and EfficientNet on ADE20K with ReLU, PReLU, ELU,
SoftPlus, GELU, SELU, Swish and ASH, and shows segmented samples; it reports no number and
no metric. ``ash-seg`` asks the measurable version of its claim: does a U-Net (:class:`ashlib.models.UNet`)
with ASH at every activation site segment held-out images better, by mean IoU, than the
same network with ReLU or Swish?

Each (activation, seed) trains one U-Net with per-pixel cross-entropy and Adam (batch 32 and
Adam's default learning rate 1e-3 in every profile, as App. A states for all the appendix's
runs), evaluates the held-out split after every epoch (confusion matrix, mean IoU, pixel
accuracy; :mod:`ashlib.analysis.segmentation`), records every adaptive activation parameter
(ASH's z_k and alpha) after every epoch, and keeps the predicted maps of the first
``n_show`` held-out images. The reported score of a run is that of its last epoch (no epoch
is picked on the held-out split). All activations of one seed start from the same random
state and see the same batches.

Data. ADE20K cannot be obtained offline, so the ``quick`` and ``book`` profiles use the
procedural shapes set (:mod:`ashlib.data.shapes`, preset ``quick``: one large shape per image
on a textured background), whose generator knows every pixel's class. Pixel classes: the
background and the ten shape classes (11 in all). Background + shape class, rather than
foreground/background only, because ADE20K is *semantic* segmentation: a pixel must be put
in the right class, not only told apart from the background; a network has to recognise the
shape from its whole outline (disk vs ring, square vs frame differ only inside) and draw its
boundary. The object-vs-background IoU (all shape classes merged) is reported beside it, so
a network that finds the object but names it wrongly can be told apart from one that misses it.

Profiles:

- ``quick`` (what the notebook runs live): 1,000 training and 300 held-out images of 32 x 32
  pixels, a 3-level U-Net of widths 8/16/32 (14 activation sites), 8 epochs, seeds 0 and 1.
- ``book`` (stored under ``results/book/ash-seg``): see :meth:`AshSegConfig.for_profile`.
- ``paper``: ADE20K (ADEChallengeData2016 under ``data_root``, default ``$ASHLIB_DATA`` or
  ``data/``; see :mod:`ashlib.data.ade20k`), 150 classes, images resized and centre-cropped
  to 256 x 256 (the appendix gives no size), the U-Net of Ronneberger et al. (widths
  64/128/256/512/1024), the eight activations of Supp. Fig. 3, batch 32, Adam lr 1e-3, 50
  epochs (the appendix gives no number), seeds 0, 1, 2, on the best available device. A
  missing folder raises a FileNotFoundError naming the files expected; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..analysis.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from ..analysis.trajectories import (RunTrajectories, activation_parameter_groups, record_activation_parameters,
                                     thin_records)
from ..data import is_batch_indexable
from ..data.ade20k import ADE20K_CLASSES, load_ade20k
from ..data.shapes import SEGMENTATION_CLASSES, load_shapes_segmentation
from ..models import UNet
from ..train import epoch_permutation, seed_everything, select_device, set_threads
from .labels import label
from .registry import ExperimentResult, environment, register
from .report import mean_sd_se
from .runstore import RunStore
from .verdicts import gate_adaptive_verdict

__all__ = ["AshSegConfig", "AshSegResult", "run_ash_seg", "build_model", "load_data", "evaluate_segmentation",
           "object_iou", "compare_to", "seg_verdict", "verdict_rule", "PAPER_ACTS"]

#: the activations of Supp. Figs. 3-5, in the appendix's order
PAPER_ACTS = ("relu", "prelu", "elu", "softplus", "gelu", "selu", "swish", "ash")


@dataclass(frozen=True)
class AshSegConfig:
    """Settings of ``ash-seg`` (see the module docstring and :meth:`for_profile`).

    ``dataset``: ``shapes`` (procedural, offline; ``shapes_preset``, ``image_size``, ``n_train``,
    ``n_test``) or ``ade20k`` (files under ``data_root``; ``n_train``/``n_test`` > 0 limit the
    images read, 0 reads all). ``widths``: the U-Net's channels per level. ``act_lr``: learning
    rate of the activation parameters (z, alpha) in their own Adam group; 0 (default) trains them
    with ``lr``, as the appendix does. ``n_show``: held-out images whose predicted maps are kept
    for the figure.
    """

    profile: str = "quick"
    dataset: str = "shapes"
    shapes_preset: str = "quick"
    data_root: str = ""
    image_size: int = 32
    n_train: int = 1000
    n_test: int = 300
    widths: tuple[int, ...] = (8, 16, 32)
    acts: tuple[str, ...] = ("relu", "swish", "ash")
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    act_lr: float = 0.0
    seeds: tuple[int, ...] = (0, 1)
    n_show: int = 6
    eval_batch_size: int = 250
    num_workers: int = 0
    device: str = "cpu"
    threads: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "AshSegConfig":
        """The settings of ``profile``.

        - ``quick``: shapes (preset quick) 32 px, 1,000 train / 300 held-out images, U-Net 8/16/32,
          batch 32, Adam lr 1e-3, 8 epochs, seeds 0, 1 (about two minutes on one CPU thread).
        - ``book``: shapes 32 px, 2,000 train / 500 held-out images, U-Net 8/16/32, batch 32, Adam lr
          1e-3, 20 epochs, seeds 0, 1, 2 (sized to about 15 minutes on one CPU thread).
        - ``paper``: ADE20K at 256 px, U-Net 64-1024, the eight activations of Supp. Fig. 3, batch 32,
          Adam lr 1e-3, 50 epochs, seeds 0, 1, 2, device auto.
        """
        if profile == "quick":
            return cls(profile="quick")
        if profile == "book":
            return cls(profile="book", n_train=2000, n_test=500, epochs=20, seeds=(0, 1, 2))
        if profile == "paper":
            return cls(profile="paper", dataset="ade20k", image_size=256, n_train=0, n_test=0,
                       widths=(64, 128, 256, 512, 1024), acts=PAPER_ACTS, epochs=50, seeds=(0, 1, 2), n_show=6,
                       eval_batch_size=32, num_workers=4, device="auto")
        raise ValueError(f"profile={profile!r}; allowed: quick, book, paper")

    def describe(self) -> str:
        """One line: data, network, training and seeds (printed with every result)."""
        if self.dataset == "shapes":
            data = (f"procedural shapes ({self.shapes_preset} preset) {self.image_size}px, {self.n_train} train / "
                    f"{self.n_test} held-out images, {len(SEGMENTATION_CLASSES)} pixel classes")
        else:
            data = f"ADE20K {self.image_size}px, {ADE20K_CLASSES} classes"
        return (f"{data}; U-Net {'/'.join(map(str, self.widths))}; Adam lr {self.lr:g}"
                + (f" (activation parameters {self.act_lr:g})" if self.act_lr else "")
                + f", batch {self.batch_size}, {self.epochs} epochs; seeds {', '.join(map(str, self.seeds))}; "
                f"profile {self.profile}")


def _data_root(cfg: AshSegConfig) -> str:
    return cfg.data_root or os.environ.get("ASHLIB_DATA", "data")


def load_data(cfg: AshSegConfig) -> tuple[Any, Any, int, int | None, tuple[str, ...]]:
    """(train, test, num_classes, ignore_index, class names) of the config's data set.

    Raises:
        FileNotFoundError: ``dataset="ade20k"`` and the ADEChallengeData2016 files are not under
            ``data_root`` (the message names the files expected and where to get them).
    """
    if cfg.dataset == "shapes":
        tr, te = load_shapes_segmentation(cfg.n_train, cfg.n_test, cfg.image_size, seed=0, preset=cfg.shapes_preset)
        return tr, te, len(SEGMENTATION_CLASSES), None, SEGMENTATION_CLASSES
    if cfg.dataset == "ade20k":
        tr, te = load_ade20k(_data_root(cfg), cfg.image_size)
        if cfg.n_train:
            tr.images, tr.annotations = tr.images[:cfg.n_train], tr.annotations[:cfg.n_train]
        if cfg.n_test:
            te.images, te.annotations = te.images[:cfg.n_test], te.annotations[:cfg.n_test]
        return tr, te, ADE20K_CLASSES, tr.ignore_index, tuple(f"class {i}" for i in range(ADE20K_CLASSES))
    raise ValueError(f"dataset={cfg.dataset!r}; allowed: shapes, ade20k")


def build_model(cfg: AshSegConfig, act: str, num_classes: int) -> nn.Module:
    """The config's U-Net with activation ``act`` (a registry name or factory) at every site."""
    return UNet(num_classes, in_channels=3, widths=cfg.widths, act=act)


def _batches(data: Any, order: Tensor, batch_size: int, num_workers: int = 0):
    """(inputs, targets) batches of ``data`` in ``order``: one fancy-index per batch for in-memory
    sets, a DataLoader (optionally with worker processes) for sets read from disk."""
    if is_batch_indexable(data):
        for idx in torch.split(order, batch_size):
            yield data[idx]
        return
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, sampler=order.tolist(),
                                         num_workers=num_workers)
    yield from loader


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, data: Any, num_classes: int, ignore_index: int | None = None,
                          batch_size: int = 250, device: torch.device | str = "cpu",
                          num_workers: int = 0) -> dict[str, Any]:
    """Mean per-pixel cross-entropy and the confusion matrix of ``model`` on ``data`` (eval mode;
    the mode is restored). Pixels whose target is ``ignore_index`` are left out of both."""
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum, n_pix = 0.0, 0
    ii = -100 if ignore_index is None else ignore_index
    for x, y in _batches(data, torch.arange(len(data)), batch_size, num_workers):
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss_sum += float(F.cross_entropy(out.float(), y, ignore_index=ii, reduction="sum"))
        n_pix += int((y != ii).sum())
        cm += confusion_matrix(out.argmax(1), y, num_classes, ignore_index)
    model.train(was_training)
    return {"loss": loss_sum / max(n_pix, 1), "confusion": cm}


def object_iou(cm: Tensor) -> float:
    """IoU of "any shape" against the background (class 0), all other classes merged: whether the
    network finds the object, whatever class it gives it."""
    tp = int(cm[1:, 1:].sum())
    fp = int(cm[0, 1:].sum())
    fn = int(cm[1:, 0].sum())
    return tp / (tp + fp + fn) if tp + fp + fn else math.nan


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


# ---------------------------------------------------------------------- the verdict rule


def compare_to(ash: list[float], other: list[float]) -> dict[str, Any]:
    """ASH's per-seed scores against another activation's: the difference of the means and the
    margin it must exceed, the larger of the two sample standard deviations over seeds.

    ``outcome``: "better" (difference > margin), "worse" (difference < -margin), "tie" (otherwise),
    or "one seed" when either side has fewer than two seeds (no spread to compare with)."""
    a, o = mean_sd_se(ash), mean_sd_se(other)
    if a["n"] < 2 or o["n"] < 2:
        return {"diff": (a["mean"] - o["mean"]) if a["n"] and o["n"] else None, "margin": None, "outcome": "one seed"}
    diff = a["mean"] - o["mean"]
    margin = max(a["sd"], o["sd"])
    outcome = "better" if diff > margin else "worse" if diff < -margin else "tie"
    return {"diff": diff, "margin": margin, "outcome": outcome}


def seg_verdict(outcomes: list[str]) -> str:
    """The ASH-SEG word from ASH's outcome against each other activation (see :func:`verdict_rule`)."""
    if not outcomes:
        return "not rerun here"
    if "one seed" in outcomes:
        return "inconclusive: one seed, no spread over seeds to compare with"
    if all(o == "better" for o in outcomes):
        return "reproduced"
    if all(o == "tie" for o in outcomes):
        return "inconclusive: every difference within the spread over seeds"
    if "better" not in outcomes and "worse" in outcomes:
        return "not reproduced"
    return "mixed"


def verdict_rule() -> str:
    """The rule behind :meth:`AshSegResult.verdicts`, as text for the notebook (stated before the numbers)."""
    return (
        "ASH-SEG: the score of a run is the mean IoU over pixel classes on the held-out images after the last "
        "epoch. For each other activation o, ASH is 'better' when its mean over seeds exceeds o's by more than "
        "the larger of the two standard deviations over seeds, 'worse' when it falls short by more than that, "
        "else 'tie'. Better than every other activation -> reproduced; better than none and worse than at least "
        "one -> not reproduced; a tie with every one -> inconclusive; anything else -> mixed. Fewer than two "
        "seeds -> inconclusive. If ASH's z and alpha moved by less than 0.05 at every site, ASH was a fixed "
        "function and the word becomes 'not tested: the parameter stayed at its start' (gate_adaptive_verdict). "
        "On the shapes data the verdict is qualified 'procedural shapes, not ADE20K'.")


# ---------------------------------------------------------------------- results


@dataclass
class AshSegResult(RunTrajectories, ExperimentResult):
    """Runs of ``ash-seg``: one row per (activation, seed).

    ``rows[i]``: act, seed, history (per epoch: train_loss, test_loss, test_miou, test_pixel_acc,
    test_object_iou, seconds), trajectory (ASH's parameters per epoch), miou, pixel_acc,
    object_iou, iou (per class; None for a class absent from truth and prediction), confusion,
    wall_seconds, parameters. ``preds[(act, seed)]``: predicted maps (uint8, ``(n_show, S, S)``) of the
    held-out images ``show_images`` whose true maps are ``show_truth``.
    """

    config: AshSegConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    show_images: Tensor | None = field(default=None, repr=False)
    show_truth: Tensor | None = field(default=None, repr=False)
    preds: dict[tuple[str, int], Tensor] = field(default_factory=dict, repr=False)

    def acts(self) -> list[str]:
        """Activations in run order."""
        return [a for a in self.config.acts if any(r["act"] == a for r in self.rows)]

    def _runs(self, act: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["act"] == act]

    def summary(self) -> list[dict[str, Any]]:
        """Per activation, over seeds: mean and sd of the held-out mIoU, pixel accuracy and object IoU
        (in %), the per-seed mIoUs, seconds per epoch and parameters."""
        out = []
        for act in self.acts():
            runs = self._runs(act)
            m = mean_sd_se(100 * r["miou"] for r in runs)
            pa = mean_sd_se(100 * r["pixel_acc"] for r in runs)
            row = {"act": label(act), "miou": m["mean"], "miou_sd": m["sd"], "pixel_acc": pa["mean"],
                   "pixel_acc_sd": pa["sd"]}
            if all(r.get("object_iou") is not None for r in runs):
                ob = mean_sd_se(100 * r["object_iou"] for r in runs)
                row.update({"object_iou": ob["mean"], "object_iou_sd": ob["sd"]})
            row.update({"seeds": m["n"], "miou_per_seed": ", ".join(f"{100 * r['miou']:.1f}" for r in runs),
                        "sec_per_epoch": sum(r["seconds_per_epoch"] for r in runs) / len(runs),
                        "parameters": runs[0]["parameters"]})
            out.append(row)
        return out

    def per_class(self) -> list[dict[str, Any]]:
        """Per pixel class: each activation's IoU (%), mean over the seeds where the class has one."""
        out = []
        for c, name in enumerate(self.class_names):
            row: dict[str, Any] = {"class": name}
            for act in self.acts():
                vals = [r["iou"][c] for r in self._runs(act) if r["iou"][c] is not None]
                row[label(act)] = 100 * sum(vals) / len(vals) if vals else None
            out.append(row)
        return out

    def curves(self) -> list[dict[str, Any]]:
        """Per (activation, epoch): mean and sd over seeds of the training loss and the held-out scores."""
        out = []
        for act in self.acts():
            runs = self._runs(act)
            for e in range(min(len(r["history"]) for r in runs)):
                row: dict[str, Any] = {"act": label(act), "epoch": e + 1}
                for key in ("train_loss", "test_loss", "test_miou", "test_pixel_acc"):
                    s = mean_sd_se(r["history"][e][key] for r in runs)
                    row[key], row[key + "_sd"] = s["mean"], s["sd"]
                out.append(row)
        return out

    def per_seed(self) -> list[dict[str, Any]]:
        """Per seed: each activation's held-out mIoU (%) and the activation with the highest. All
        activations of one seed share initial weights and batches, so this shows how consistent an
        ordering is; it is descriptive (the verdict rule compares means with the spread over seeds)."""
        out = []
        for seed in self.config.seeds:
            runs = {r["act"]: r for r in self.rows if r["seed"] == seed}
            if not runs:
                continue
            row: dict[str, Any] = {"seed": seed}
            row.update({label(a): 100 * runs[a]["miou"] for a in self.acts() if a in runs})
            row["highest"] = label(max(runs, key=lambda a: runs[a]["miou"]))
            out.append(row)
        return out

    def comparisons(self) -> list[dict[str, Any]]:
        """ASH against every other activation by held-out mIoU (in %; see :func:`compare_to`)."""
        if "ash" not in self.acts():
            return []
        ash = [100 * r["miou"] for r in self._runs("ash")]
        out = []
        for act in self.acts():
            if act == "ash":
                continue
            c = compare_to(ash, [100 * r["miou"] for r in self._runs(act)])
            out.append({"ASH vs": label(act), "difference": c["diff"], "margin": c["margin"], "outcome": c["outcome"]})
        return out

    def ash_parameters(self) -> list[dict[str, Any]]:
        """Per ASH site and quantity (z, alpha): the start, the end (mean over seeds, and the range
        over seeds) and the largest movement over seeds (on the trained scale: log for alpha); for z
        also the kept fraction k = 1 - Phi(z) it implies at the end, in %."""
        from ..functional import k_from_z  # noqa: PLC0415

        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for m in self.movement():
            if m["act"] == "ash":
                groups.setdefault((m["site"], m["quantity"]), []).append(m)
        out = []
        for (site, quantity), ms in groups.items():
            ends = [m["end"] for m in ms]
            row = {"site": site, "quantity": quantity, "start": ms[0]["start"], "end": sum(ends) / len(ends),
                   "end_min": min(ends), "end_max": max(ends), "movement": max(m["movement"] for m in ms)}
            if quantity == "z":
                row["k_end"] = 100 * float(k_from_z(row["end"]))
            out.append(row)
        return out

    def max_movement(self, act: str = "ash") -> float | None:
        """The largest movement of ``act``'s adaptive parameters (z, alpha) over all sites and seeds."""
        moves = [m["movement"] for m in self.movement() if m["act"] == act]
        return max(moves) if moves else None

    def verdicts(self) -> list[dict[str, str]]:
        """ASH-SEG by the rule of :func:`verdict_rule` (stated there before any number)."""
        comps = self.comparisons()
        if not comps:
            return [{"claim": "ASH-SEG", "evidence": "ASH and another activation needed", "verdict": "not rerun here"}]
        word = seg_verdict([c["outcome"] for c in comps])
        s = {r["act"]: r for r in self.summary()}
        ev = "held-out mIoU (%) over seeds: " + "; ".join(
            f"{a} {s[a]['miou']:.1f}" + (f" ± {s[a]['miou_sd']:.1f}" if s[a]["miou_sd"] is not None else "")
            for a in s)
        ev += "; ASH vs " + ", ".join(
            f"{c['ASH vs']}: {c['difference']:+.1f}" + (f" (margin {c['margin']:.1f}, {c['outcome']})"
                                                        if c["margin"] is not None else f" ({c['outcome']})")
            for c in comps)
        moved = self.max_movement("ash")
        if moved is not None:
            ev += f"; largest movement of ASH's z/alpha {moved:.3f}"
        ev += f"; {self.config.describe()}"
        if self.config.dataset == "shapes" and word.split(":")[0] in ("reproduced", "not reproduced", "mixed",
                                                                      "inconclusive"):
            word = word + ("; " if ":" in word else ": ") + "procedural shapes, not ADE20K"
        return [{"claim": "ASH-SEG", "evidence": ev, "verdict": gate_adaptive_verdict(word, moved)}]

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        runs = [{k: v for k, v in r.items() if k not in ("history", "trajectory", "iou", "confusion")}
                for r in self.rows]
        return {"runs": runs, "summary": self.summary(), "per_seed": self.per_seed(), "per_class": self.per_class(),
                "curves": self.curves(),
                "comparisons": self.comparisons(), "verdicts": self.verdicts(),
                "trajectories": self.trajectories(), "movement": self.movement()}

    def to_dict(self) -> dict[str, Any]:
        rows = [{k: v for k, v in r.items() if k != "confusion"} for r in self.rows]
        return {"experiment": "ash-seg", "config": dataclasses.asdict(self.config), "setup": self.config.describe(),
                "env": self.env, "class_names": list(self.class_names), "summary": self.summary(), "rows": rows}

    def figures(self) -> dict[str, Any]:
        from . import plotting_seg as P  # noqa: PLC0415

        figs = {"predictions": P.prediction_grid(self), "miou": P.miou_by_act(self), "curves": P.seg_curves(self)}
        traj = self.trajectories()
        if traj:
            from .plotting_params import trajectory_figure  # noqa: PLC0415

            figs["parameter_trajectories"] = trajectory_figure(
                [t for t in traj if t["act"] == "ash"], panel=("quantity",), line=("site",),
                title="ASH's z and alpha per site over training (mean over seeds)")
        return figs


# ---------------------------------------------------------------------- the run


def run_ash_seg(config: AshSegConfig, progress: bool = True, store: RunStore | None = None) -> AshSegResult:
    """Train one U-Net per (seed, activation) of ``config``; see the module docstring.

    ``store``: each (activation, seed) network is a unit (see :mod:`ashlib.experiments.runstore`):
    its row and the predicted maps of the shown images are stored when it ends (not its weights),
    and its model, optimiser, history and RNG state are checkpointed after epochs while it trains.
    """
    from ..utils.progress import progress_bar  # noqa: PLC0415

    store = store if store is not None else RunStore.disabled()
    old_threads = set_threads(config.threads)
    dev = select_device(config.device)
    result = AshSegResult(config=config, env=environment(dev))
    try:
        train, test, num_classes, ignore, names = load_data(config)
        result.class_names = tuple(names)
        n_show = min(config.n_show, len(test))
        show = next(_batches(test, torch.arange(n_show), n_show)) if n_show else (None, None)
        result.show_images, result.show_truth = show
        ii = -100 if ignore is None else ignore

        def train_one(act: str, seed: int, unit: str) -> dict[str, Any]:
            seed_everything(seed)
            model = build_model(config, act, num_classes).to(dev)
            opt = torch.optim.Adam(activation_parameter_groups(model, config.lr, config.act_lr or None), lr=config.lr)
            records = [record_activation_parameters(0, model)]
            history: list[dict[str, Any]] = []
            saved = store.load_progress(unit)
            if saved is not None:
                model.load_state_dict(saved["model"])
                opt.load_state_dict(saved["opt"])
                history, records = list(saved["history"]), list(saved["records"])
                torch.set_rng_state(saved["rng"])
            t_start = time.perf_counter()
            bar = progress_bar(range(len(history), config.epochs), desc=f"U-Net {label(act)} seed {seed}",
                               enabled=progress, leave=False, initial=len(history), total=config.epochs)
            for epoch in bar:
                t0 = time.perf_counter()
                model.train()
                loss_sum, n_pix = 0.0, 0
                for x, y in _batches(train, epoch_permutation(len(train), seed, epoch), config.batch_size,
                                     config.num_workers):
                    x, y = x.to(dev), y.to(dev)
                    loss = F.cross_entropy(model(x), y, ignore_index=ii)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    k = int((y != ii).sum())
                    loss_sum += float(loss.detach()) * k
                    n_pix += k
                seconds = time.perf_counter() - t0
                ev = evaluate_segmentation(model, test, num_classes, ignore, config.eval_batch_size, dev,
                                           config.num_workers)
                cm = ev["confusion"]
                history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(n_pix, 1), "test_loss": ev["loss"],
                                "test_miou": mean_iou(cm), "test_pixel_acc": pixel_accuracy(cm),
                                "test_object_iou": object_iou(cm) if config.dataset == "shapes" else None,
                                "seconds": seconds})
                records.append(record_activation_parameters(epoch + 1, model))
                if not math.isfinite(history[-1]["train_loss"]):
                    raise FloatingPointError(f"{unit}: training loss is {history[-1]['train_loss']} at epoch {epoch + 1}")
                bar.set_postfix(miou=round(history[-1]["test_miou"], 3))
                if epoch + 1 < config.epochs:
                    store.save_progress(unit, lambda: {"model": model.state_dict(), "opt": opt.state_dict(),
                                                       "history": history, "records": records,
                                                       "rng": torch.get_rng_state()}, epoch + 1)
            bar.close()
            preds = torch.zeros(0, dtype=torch.uint8)
            if n_show:
                model.eval()
                with torch.no_grad():
                    preds = model(show[0].to(dev)).argmax(1).to(torch.uint8).cpu()
            last = history[-1]
            row = {"act": act, "seed": seed, "history": history, "trajectory": thin_records(records),
                   "miou": last["test_miou"], "pixel_acc": last["test_pixel_acc"],
                   "object_iou": last["test_object_iou"], "iou": _nan_to_none(iou_per_class(cm)),
                   "confusion": cm.tolist(),
                   "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
                   "wall_seconds": time.perf_counter() - t_start,
                   "parameters": sum(p.numel() for p in model.parameters())}
            return {"row": row, "preds": preds}

        for act, seed, done in store.seed_act_units(config.seeds, config.acts, train_one):
            result.rows.append(done["row"])
            result.preds[(act, seed)] = done["preds"]
    finally:
        torch.set_num_threads(old_threads)
    return result


@register("ash-seg", "ASH appendix E: U-Net semantic segmentation with ReLU, Swish and ASH (held-out mIoU, "
          "predicted masks; procedural shapes offline, ADE20K in the paper profile)", AshSegConfig)
def _run(config: AshSegConfig, progress: bool = True, store: RunStore | None = None) -> AshSegResult:
    return run_ash_seg(config, progress, store=store)
