"""The fit/evaluate loop: learning, penalties, resume equality, DDP equality, k-fold."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ashlib.models import MLP
from ashlib.train import (cross_validate, epoch_permutation, evaluate, fit, kfold_indices, penalised_weights,
                          seed_everything, select_device)


def blobs(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    x = centres[y] + 0.5 * torch.randn(n, 2, generator=g)
    return TensorDataset(x, y)


class ListDataset(Dataset):
    """Not batch-indexable: goes through the DataLoader path."""

    def __init__(self, ds: TensorDataset) -> None:
        self.x, self.y = ds.tensors

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def test_select_device_and_seed():
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    assert select_device("cpu") == torch.device("cpu")
    seed_everything(5)
    a = torch.rand(3)
    seed_everything(5)
    assert torch.equal(a, torch.rand(3))
    assert torch.equal(epoch_permutation(10, 1, 2), epoch_permutation(10, 1, 2))
    assert not torch.equal(epoch_permutation(50, 1, 2), epoch_permutation(50, 1, 3))


@pytest.mark.parametrize("wrap", [False, True])
def test_tiny_fit_lowers_loss(wrap):
    ds = blobs()
    data = ListDataset(ds) if wrap else ds
    seed_everything(0)
    model = MLP(2, 3, width=8, depth=1, act="agumbel")
    before = evaluate(model, ds)
    res = fit(model, data, epochs=15, batch_size=20, lr=0.1, progress=False, val_data=ds)
    after = evaluate(res.model, ds)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > 0.9
    assert [h["epoch"] for h in res.history] == list(range(1, 16))
    assert set(res.history[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "seconds", "lr"}
    assert res.history[-1]["val_acc"] == pytest.approx(after["accuracy"])


def test_evaluate_by_hand():
    # logits = x itself: predictions are argmax(x); loss is cross-entropy computed by hand
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    y = torch.tensor([0, 1, 1, 0])
    out = evaluate(nn.Identity().to("cpu"), TensorDataset(x, y), device="cpu")
    assert out["accuracy"] == pytest.approx(0.5)
    lse = torch.logsumexp(x, 1)
    ref = float((lse - x[torch.arange(4), y]).mean())
    assert out["loss"] == pytest.approx(ref, rel=1e-6)
    # binary: one logit per example, accuracy of logit > 0 against 0/1 targets
    xb = torch.tensor([[1.0], [-1.0], [2.0]])
    yb = torch.tensor([1.0, 1.0, 0.0])
    assert evaluate(nn.Identity(), TensorDataset(xb, yb), device="cpu")["accuracy"] == pytest.approx(1 / 3)


def test_l1_l2_penalty_step_by_hand():
    # one SGD step on one full batch: w' = w - lr * (dL/dw + l1 * sign(w) + 2 * l2 * w)
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1).gt(0).float()
    lin = nn.Linear(3, 1)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    lr, l1, l2 = 0.1, 0.01, 0.02
    fit(lin, TensorDataset(x, y), epochs=1, batch_size=8, lr=lr, l1=l1, l2=l2, loss="bce", progress=False)
    # reference gradient of the mean BCE, by hand: (sigmoid(z) - y) x / n
    z = x @ w0.T + b0
    g = (torch.sigmoid(z) - y)
    gw = (g * x).mean(0, keepdim=True)
    gb = g.mean(0)
    w_ref = w0 - lr * (gw + l1 * torch.sign(w0) + 2 * l2 * w0)
    b_ref = b0 - lr * gb  # biases are not penalised
    assert torch.allclose(lin.weight.detach(), w_ref, atol=1e-6)
    assert torch.allclose(lin.bias.detach(), b_ref, atol=1e-6)
    assert len(penalised_weights(MLP(2, 1, depth=3, act="agumbel"))) == 4


class Stop(Exception):
    pass


@pytest.mark.parametrize("wrap", [False, True])
def test_resume_equals_uninterrupted(tmp_path, wrap):
    ds = blobs(120)
    data = ListDataset(ds) if wrap else ds

    def model():
        seed_everything(1)
        return nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 3))

    kw = dict(epochs=5, batch_size=16, lr=0.05, momentum=0.9, seed=7, deterministic=True, progress=False,
              scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2, 0.5))
    straight = fit(model(), data, **kw)

    def interrupt(epoch, entry):
        if epoch == 2:
            raise Stop

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Stop):
        fit(model(), data, checkpoint=ckpt, on_epoch_end=interrupt, **kw)
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    resumed = fit(model(), data, checkpoint=ckpt, **kw)
    assert resumed.resumed_from == 2
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(straight.history) == strip(resumed.history)
    # a checkpoint from another run is refused
    with pytest.raises(ValueError, match="different run"):
        fit(model(), data, checkpoint=ckpt, **{**kw, "batch_size": 8})


def test_amp_cpu_runs():
    seed_everything(0)
    res = fit(MLP(2, 3, width=8), blobs(64), epochs=2, batch_size=16, lr=0.1, amp=True, device="cpu",
              progress=False)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in res.history)


def test_kfold_partition():
    folds = kfold_indices(23, 5, seed=3)
    tests = [t for _, t in folds]
    allidx = torch.cat(tests).sort().values
    assert torch.equal(allidx, torch.arange(23))
    assert sorted(len(t) for t in tests) == [4, 4, 5, 5, 5]
    for tr, te in folds:
        assert len(set(tr.tolist()) & set(te.tolist())) == 0 and len(tr) + len(te) == 23
    with pytest.raises(ValueError):
        kfold_indices(3, 5)


def test_cross_validate():
    ds = blobs(100)
    out = cross_validate(lambda fold: MLP(2, 3, width=8), ds, k=4, folds=[0, 2], epochs=3, batch_size=10, lr=0.1,
                         progress=False)
    assert [o["fold"] for o in out] == [0, 2]
    assert all(0.0 <= o["test"]["accuracy"] <= 1.0 for o in out)


# ----------------------------------------------------------------------------- DDP (gloo, 2 CPU processes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        seed_everything(0)
        model = MLP(2, 3, width=8, depth=2, act="agumbel")
        # 45 examples, global batch 20: batches of 20, 20, 5; the last is split 3 + 2 (unequal shards)
        res = fit(model, blobs(45), epochs=2, batch_size=20, lr=0.1, l1=1e-3, l2=1e-3, device="cpu",
                  progress=False)
        if rank == 0:
            torch.save({"params": [p.detach() for p in res.model.parameters()], "history": res.history},
                       os.path.join(out_dir, "ddp.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_matches_single_process(tmp_path):
    seed_everything(0)
    model = MLP(2, 3, width=8, depth=2, act="agumbel")
    single = fit(model, blobs(45), epochs=2, batch_size=20, lr=0.1, l1=1e-3, l2=1e-3, device="cpu",
                 progress=False)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for p, q in zip(single.model.parameters(), ddp["params"]):
        assert torch.allclose(p.detach(), q, atol=1e-6, rtol=1e-5)
    for a, b in zip(single.history, ddp["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_acc"] == pytest.approx(b["train_acc"])


def test_dense_predictions_are_refused_not_scored_per_image():
    """A segmentation output would give 'accuracies' far above 100 % if its correct pixels were
    divided by the number of images: fit/evaluate refuse it."""
    import torch
    from torch.utils.data import TensorDataset

    from ashlib.train import evaluate

    model = torch.nn.Conv2d(1, 3, 1)
    data = TensorDataset(torch.randn(4, 1, 5, 5), torch.randint(0, 3, (4, 5, 5)))
    with pytest.raises(ValueError, match="one prediction per example"):
        evaluate(model, data)
