"""One fit/evaluate loop for every experiment and notebook.

What it does, in the order a run meets it:

- **device**: ``select_device("auto")`` picks CUDA (``cuda:LOCAL_RANK`` under torchrun), then
  Apple's MPS, then the CPU.
- **seeds**: :func:`seed_everything` seeds Python, numpy and torch; ``deterministic=True`` also
  asks torch for deterministic kernels. The order of the training examples in epoch ``e``
  is a permutation drawn from a generator seeded with ``(seed, e)`` alone, so it does not
  depend on what ran before: this is what makes resuming exact.
- **batches**: batch-indexable datasets (``TensorDataset``, :class:`ashlib.data.ImageTensorDataset`)
  are sliced one batch at a time without a DataLoader (much faster for small networks);
  others go through a DataLoader fed with the same index batches.
- **loss**: cross-entropy for class logits, binary cross-entropy with logits for one output;
  optional L1 and L2 penalties on the weights of linear and conv layers (Farhadi et al. use
  both), ``l1 * sum|w| + l2 * sum w^2``, added to the mean loss of the batch.
- **AMP**: ``amp=True`` runs the forward pass under autocast (float16 with a GradScaler on
  CUDA, bfloat16 elsewhere).
- **history**: per epoch the mean training loss (without the penalty) and accuracy, the
  validation loss and accuracy when ``val_data`` is given, the learning rate and the seconds.
- **checkpoints**: with ``checkpoint=PATH`` the model, optimizer, scheduler, scaler, history
  and every RNG state are saved after each epoch (atomically: a temporary file in the same
  folder, fsync, rename); calling ``fit`` again with the same path resumes after the last
  saved epoch, and ends with the same parameters as a run that was never interrupted.
  Checkpoints hold only tensors and plain data (dicts, lists, tuples, numbers, strings) and are
  read with ``torch.load(weights_only=True)``: a file holding any other object is refused
  (:class:`CheckpointError`) without running anything. They carry a format name and version
  (:data:`CHECKPOINT_VERSION`); one from another program or ashlib version is refused with a
  message that says what to do.
- **DDP**: when ``torch.distributed`` is initialised (e.g. under ``torchrun``; see
  :func:`init_distributed`) the model is wrapped in DistributedDataParallel and each global
  batch of ``batch_size`` examples is split across the processes. Each process scales its
  summed loss by ``world_size / batch_size`` so that DDP's gradient average equals the
  gradient of the global batch mean: the result matches one process on the same global batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .utils.io import atomic_open
from .analysis.trajectories import activation_parameter_groups
from .data.tensors import is_batch_indexable, subset

__all__ = [
    "select_device", "seed_everything", "init_distributed", "dist_info", "is_main_process",
    "FitResult", "fit", "evaluate", "kfold_indices", "cross_validate", "penalised_weights",
    "epoch_permutation", "CheckpointError", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "atomic_torch_save",
    "safe_torch_load", "load_fit_checkpoint",
]

#: Name and version stored in every checkpoint :func:`fit` writes; bump the version when the layout changes.
CHECKPOINT_FORMAT = "ashlib.fit"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint (or stored result) file that cannot be used: foreign objects, another format or
    version, another run's settings, or damaged. The message names the file and what to do."""


# --------------------------------------------------------------------------- devices, seeds, processes


def set_threads(threads: int) -> int:
    """Set torch's intra-op thread count when ``threads > 0``; return the previous count to restore."""
    old = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    return old


def select_device(device: str | torch.device = "auto") -> torch.device:
    """The device to train on: ``"auto"`` picks cuda (this process's local rank), then mps, then cpu."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, numpy and torch (all devices).

    With ``deterministic=True`` torch is also asked for deterministic algorithms (and cuDNN's
    autotuner is switched off); operations without a deterministic version then raise.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and shows progress."""
    return dist_info()[0] == 0


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """Initialise torch.distributed from torchrun's environment (``WORLD_SIZE``, ``RANK``, ...).

    Does nothing when ``WORLD_SIZE`` is unset or 1, or when already initialised. The backend
    defaults to NCCL with CUDA and gloo otherwise. Returns ``(rank, world_size)``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(select_device("auto"))
    return dist_info()


# --------------------------------------------------------------------------- batches


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training examples in ``epoch``: depends only on (seed, epoch)."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen)


def _global_batches(order: torch.Tensor, batch_size: int, drop_last: bool) -> list[torch.Tensor]:
    batches = list(torch.split(order, batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class _IndexBatches:
    """Batch sampler for a DataLoader: this rank's share of each global batch."""

    def __init__(self, batches: list[torch.Tensor], rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches:
            yield torch.tensor_split(b, self.world)[self.rank].tolist()

    def __len__(self) -> int:
        return len(self.batches)


def _iterate(data: Dataset, batches: list[torch.Tensor], rank: int, world: int, num_workers: int
             ) -> Iterator[tuple[int, Any]]:
    """Yield (global batch size, this rank's batch) for each global batch."""
    if is_batch_indexable(data):
        for b in batches:
            yield len(b), data[torch.tensor_split(b, world)[rank]]
    else:
        loader = DataLoader(data, batch_sampler=_IndexBatches(batches, rank, world), num_workers=num_workers)
        for b, batch in zip(batches, loader):
            yield len(b), batch


# --------------------------------------------------------------------------- losses and metrics


def _resolve_loss(loss: str, output: torch.Tensor) -> str:
    if loss == "auto":
        return "bce" if output.dim() == 1 or output.shape[-1] == 1 else "cross_entropy"
    if loss not in ("bce", "cross_entropy"):
        raise ValueError(f"loss={loss!r}; allowed: 'auto', 'cross_entropy', 'bce'")
    return loss


def _loss_sum_and_correct(kind: str, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss over the batch (float32) and the number of correct predictions.

    Both are per example, which is what :func:`fit` and :func:`evaluate` divide by: outputs with
    more than one prediction per example (segmentation maps, multi-label logits) are refused
    rather than counted per pixel and divided by the number of images."""
    per_example = output.dim() == 2 if kind != "bce" else output.reshape(output.shape[0], -1).shape[1] == 1
    if not per_example or target.shape[0] != output.shape[0] or (kind != "bce" and target.dim() != 1):
        raise ValueError(f"fit/evaluate score one prediction per example ({'(N, C) logits and (N,) labels' if kind != 'bce' else '(N,) or (N, 1) logits'}); "
                         f"got output {tuple(output.shape)} and target {tuple(target.shape)}. Dense predictions "
                         "(e.g. segmentation maps) need their own loop and metrics (see ashlib.experiments.ash_seg)")
    output = output.float()
    if kind == "bce":
        logit = output.reshape(-1)
        tgt = target.reshape(-1).to(logit.dtype)
        loss = F.binary_cross_entropy_with_logits(logit, tgt, reduction="sum")
        correct = ((logit > 0) == (tgt > 0.5)).sum()
    else:
        loss = F.cross_entropy(output, target.long(), reduction="sum")
        correct = (output.argmax(1) == target).sum()
    return loss, correct


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights the L1/L2 penalties act on: ``weight`` of every linear and conv layer
    (not biases, normalisation parameters or activation parameters such as alpha)."""
    kinds = (nn.Linear, nn.modules.conv._ConvNd)
    return [m.weight for m in model.modules() if isinstance(m, kinds)]


def _penalty(weights: Sequence[torch.Tensor], l1: float, l2: float) -> torch.Tensor | float:
    total: torch.Tensor | float = 0.0
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        total = total + l2 * sum(w.pow(2).sum() for w in weights)
    return total


def _to(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch[0], batch[1]
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _allreduce(values: list[float], device: torch.device) -> list[float]:
    if dist_info()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 1024, device: str | torch.device | None = None,
             loss: str = "auto", amp: bool = False, num_workers: int = 0) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (in eval mode; restores the mode after).

    Under torch.distributed each process evaluates its share and the sums are all-reduced.
    """
    if device is None:
        device = next(model.parameters()).device
    device = select_device(device)
    rank, world = dist_info()
    was_training = model.training
    model.eval()
    order = torch.arange(len(data))
    batches = _global_batches(order, batch_size, drop_last=False)
    # every rank evaluates a contiguous shard of whole batches
    mine = batches[rank::world]
    total_loss, total_correct, total_n = 0.0, 0.0, 0.0
    kind = None
    for _, batch in _iterate(data, mine, 0, 1, num_workers):
        x, y = _to(batch, device)
        with _autocast(device, amp):
            out = model(x)
        kind = kind or _resolve_loss(loss, out)
        l, c = _loss_sum_and_correct(kind, out, y)
        total_loss += float(l)
        total_correct += float(c)
        total_n += len(y)
    total_loss, total_correct, total_n = _allreduce([total_loss, total_correct, total_n], device)
    model.train(was_training)
    n = max(total_n, 1.0)
    return {"loss": total_loss / n, "accuracy": total_correct / n}


# --------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (unwrapped from DDP), on its training device.
        history: one dict per epoch: epoch, train_loss, train_acc, [val_loss, val_acc], lr, seconds.
        resumed_from: the epoch a checkpoint resumed from (0 when training started fresh).
        records: what ``record_epoch`` returned after each epoch (empty without it).
    """

    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    records: list[Any] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's entry of the history."""
        return dict(self.history[-1]) if self.history else {}


def _make_optimizer(optimizer: str | Callable, params: Iterable[torch.Tensor], lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    if callable(optimizer):
        return optimizer(params)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={optimizer!r}; allowed: 'sgd', 'adam', 'adamw' or a callable(params)")


def _rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain data (numpy's key array as a list of ints)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "numpy": (kind, [int(k) for k in keys], int(pos), int(has_gauss),
                                                    float(gauss)), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def atomic_torch_save(payload: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in ``path``'s folder, fsync, then rename over ``path``.

    An interruption at any point leaves either the previous file or the new one, never half
    of one (a leftover ``.tmp`` file is ignored by the readers).
    """
    with atomic_open(path) as fh:
        torch.save(payload, fh)


def safe_torch_load(path: str | Path, map_location: Any = None, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the file and say what to do.

    Raises:
        CheckpointError: the file holds an object other than tensors and plain data (it is
            refused before that object is built), is not a torch file, or is truncated.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(
                f"{path}: refused to load this {what}: it holds {found.group(1)}, which is not a tensor or plain "
                "data (it was written by another program or an older ashlib, or was crafted); nothing in it "
                "was run. Delete it, or use another path, to start over.") from None
        raise CheckpointError(f"{path}: not a readable {what} (damaged or not a torch file); delete it to start "
                              "over") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__}: {str(exc)[:200]}); the file "
                              "is truncated or damaged: delete it to start over") from None


def load_fit_checkpoint(path: str | Path, map_location: Any = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` and check its format and version (see :func:`safe_torch_load`)."""
    state = safe_torch_load(path, map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ashlib fit checkpoint (no format field {CHECKPOINT_FORMAT!r}); "
                              "pass resume=False or another checkpoint path to start over")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {state.get('version')!r}, this ashlib reads version "
                              f"{CHECKPOINT_VERSION}; pass resume=False (or delete the file) to start over")
    return state


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, path)


def fit(model: nn.Module, train_data: Dataset, *, epochs: int, batch_size: int, lr: float = 0.01,
        val_data: Dataset | None = None, optimizer: str | Callable = "sgd", momentum: float = 0.0,
        weight_decay: float = 0.0, l1: float = 0.0, l2: float = 0.0, loss: str = "auto",
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None, device: str | torch.device = "auto",
        seed: int = 0, deterministic: bool = False, amp: bool = False, drop_last: bool = False,
        checkpoint: str | Path | None = None, resume: bool = True, progress: bool = True,
        desc: str | None = None, eval_batch_size: int = 1024, num_workers: int = 0,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        record_epoch: Callable[[int, nn.Module], Any] | None = None,
        checkpoint_interval: float = 0.0, act_lr: float | None = None) -> FitResult:
    """Train ``model`` on ``train_data`` for ``epochs`` epochs (see the module docstring).

    Args:
        model: any module mapping a batch of inputs to logits ((N, classes) or (N, 1)).
        train_data: a dataset of (input, target) pairs.
        epochs: total epochs (a resumed run continues up to this number).
        batch_size: examples per optimisation step, over all processes together.
        lr, optimizer, momentum, weight_decay: ``"sgd"`` (default), ``"adam"``, ``"adamw"``, or a
            callable taking the parameters and returning an optimizer.
        act_lr: learning rate of the activation parameters (alpha, z, slope, beta; see
            :func:`ashlib.analysis.trajectories.activation_parameter_groups`), in their own
            optimiser parameter group; None (default): ``lr`` for every parameter, as both papers
            train. Farhadi et al. (section 3, after eq. 6) allow a separate rate for the alpha update;
            the ASH appendix trains everything with one Adam at its defaults. A callable
            ``optimizer`` then receives the list of parameter groups instead of the parameters.
        val_data: evaluated after every epoch when given.
        l1, l2: penalty weights on the linear and conv weights (:func:`penalised_weights`).
        loss: ``"auto"``, ``"cross_entropy"`` or ``"bce"``.
        scheduler: callable taking the optimizer, returning an LR scheduler stepped once per epoch.
        device: ``"auto"`` or a device.
        seed: seeds the run (dropout and other in-model randomness) and the epoch orders.
        deterministic: deterministic kernels (see :func:`seed_everything`).
        amp: automatic mixed precision.
        drop_last: drop the last incomplete batch of each epoch.
        checkpoint: file to save after every epoch and to resume from.
        resume: resume from ``checkpoint`` when it exists (False: start over and overwrite it).
        checkpoint_interval: save the checkpoint after an epoch only when at least this many seconds
            have passed since the last save (0: after every epoch); the last epoch is always saved.
        progress: show a tqdm bar over epochs (only on rank 0).
        on_epoch_end: called with (epoch, history entry) after each epoch's checkpoint is saved.
        record_epoch: called with (epoch, model) after each epoch, before the checkpoint is saved;
            what it returns (tensors and plain data only) is kept in ``FitResult.records``, one
            per epoch, and saved in the checkpoint, so a resumed run returns the records of the
            epochs it did not rerun.

    Raises:
        CheckpointError: ``checkpoint`` exists but holds foreign objects, another format version,
            another run's settings, or is damaged (the message names the file and what to do).

    Returns:
        a :class:`FitResult`.
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size}: need epochs >= 0 and batch_size >= 1")
    if l1 < 0 or l2 < 0:
        raise ValueError(f"l1={l1}, l2={l2}: penalties must be >= 0")
    dev = select_device(device)
    rank, world = dist_info()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    seed_everything(seed, deterministic=deterministic)
    model = model.to(dev)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    params = model.parameters() if act_lr is None else activation_parameter_groups(model, lr, act_lr)
    opt = _make_optimizer(optimizer, params, lr, momentum, weight_decay)
    sched = scheduler(opt) if scheduler is not None else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dev.type == "cuda")
    weights = penalised_weights(model)
    signature = {"seed": seed, "batch_size": batch_size, "world_size": world, "n_train": len(train_data)}

    history: list[dict[str, float]] = []
    records: list[Any] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        state = load_fit_checkpoint(ckpt, map_location=dev)
        if state.get("signature") != signature:
            raise CheckpointError(f"checkpoint {ckpt} was written by a different run: {state.get('signature')} != "
                                  f"{signature}; pass resume=False or another checkpoint path to start over")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state.get("scheduler") is not None:
                sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            history = list(state["history"])
            records = list(state.get("records", []))
            start = int(state["epoch"])
            _set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {ckpt} does not fit this model or optimizer ({type(exc).__name__}: "
                                  f"{str(exc)[:300]}); pass resume=False or another checkpoint path to start "
                                  "over") from None
    resumed_from = start
    last_save = time.monotonic()

    from .utils.progress import progress_bar  # noqa: PLC0415 (tqdm is imported only when training)

    bar = progress_bar(range(start, epochs), desc=desc or "fit", enabled=progress and rank == 0,
                       initial=start, total=epochs, leave=False)
    kind = None if loss == "auto" else _resolve_loss(loss, torch.empty(0, 2))
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        batches = _global_batches(epoch_permutation(len(train_data), seed, epoch), batch_size, drop_last)
        sum_loss, sum_correct, sum_n = 0.0, 0.0, 0.0
        for global_n, batch in _iterate(train_data, batches, rank, world, num_workers):
            x, y = _to(batch, dev)
            opt.zero_grad(set_to_none=True)
            with _autocast(dev, amp):
                out = net(x)
            kind = kind or _resolve_loss(loss, out)
            loss_sum, correct = _loss_sum_and_correct(kind, out, y)
            # DDP averages gradients over processes: scaling by world/global_n makes that
            # average the gradient of the global batch mean, whatever each shard's size
            objective = loss_sum * (world / global_n) + _penalty(weights, l1, l2)
            scaler.scale(objective).backward()
            scaler.step(opt)
            scaler.update()
            sum_loss += float(loss_sum.detach())
            sum_correct += float(correct)
            sum_n += len(y)
        if sched is not None:
            sched.step()
        sum_loss, sum_correct, sum_n = _allreduce([sum_loss, sum_correct, sum_n], dev)
        entry: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": sum_loss / max(sum_n, 1.0),
            "train_acc": sum_correct / max(sum_n, 1.0),
            "lr": float(opt.param_groups[0]["lr"]),
        }
        if val_data is not None:
            ev = evaluate(model, val_data, batch_size=eval_batch_size, device=dev, loss=kind or loss, amp=amp,
                          num_workers=num_workers)
            entry["val_loss"], entry["val_acc"] = ev["loss"], ev["accuracy"]
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        if record_epoch is not None:
            records.append(record_epoch(epoch + 1, model))
        bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k in ("train_loss", "val_acc")})
        if not all(math.isfinite(entry[k]) for k in ("train_loss",)):
            bar.close()
            raise FloatingPointError(f"training loss is {entry['train_loss']} at epoch {epoch + 1}")
        due = epoch + 1 == epochs or time.monotonic() - last_save >= checkpoint_interval
        if ckpt is not None and rank == 0 and due:
            last_save = time.monotonic()
            _save_checkpoint(ckpt, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None, "scaler": scaler.state_dict(),
                "history": history, "records": records, "epoch": epoch + 1, "rng": _rng_state(),
                "signature": signature,
            })
        if ckpt is not None and world > 1:
            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, entry)
    bar.close()
    if deterministic and not was_deterministic:
        torch.use_deterministic_algorithms(False)
    return FitResult(model=model, history=history, resumed_from=resumed_from, records=records)


# --------------------------------------------------------------------------- cross-validation


def kfold_indices(n: int, k: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``k`` (train, test) index pairs: a seeded permutation of ``range(n)`` cut into ``k`` near-equal
    test folds; each test fold's complement is its training set."""
    if not 2 <= k <= n:
        raise ValueError(f"k={k}; must satisfy 2 <= k <= n={n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    folds = torch.tensor_split(perm, k)
    out = []
    for i, test in enumerate(folds):
        train = torch.cat([f for j, f in enumerate(folds) if j != i])
        out.append((train.sort().values, test.sort().values))
    return out


def cross_validate(build_model: Callable[[int], nn.Module], dataset: Dataset, k: int = 5,
                   folds: Sequence[int] | None = None, split_seed: int = 0, seed: int = 0,
                   **fit_kwargs: Any) -> list[dict[str, Any]]:
    """k-fold cross-validation: for each fold, build a model, fit it on the other folds, test on it.

    Args:
        build_model: called with the fold number; must return a fresh model (seeded by the caller
            or inside; :func:`seed_everything` is called with ``seed + fold`` just before).
        dataset: all examples.
        k: number of folds; ``folds`` picks which to run (default all), e.g. ``[0, 1]``.
        split_seed: seed of the fold assignment.
        seed: base seed of the runs.
        fit_kwargs: passed to :func:`fit` (``epochs``, ``batch_size``, ``lr``, ...).

    Returns:
        one dict per fold: ``fold``, ``result`` (the FitResult) and ``test`` (loss and accuracy on the
        held-out fold).
    """
    splits = kfold_indices(len(dataset), k, split_seed)
    out = []
    for fold in (range(k) if folds is None else folds):
        tr, te = splits[fold]
        seed_everything(seed + fold)
        model = build_model(fold)
        train_ds, test_ds = subset(dataset, tr), subset(dataset, te)
        res = fit(model, train_ds, seed=seed + fold, **fit_kwargs)
        out.append({"fold": fold, "result": res,
                    "test": evaluate(res.model, test_ds, loss=fit_kwargs.get("loss", "auto"))})
    return out
