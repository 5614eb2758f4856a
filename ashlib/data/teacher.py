"""The teacher-network simulation of Farhadi, Partovi Nia and Lodi (ICPRAM 2020), section 4.1.

Procedure (``make_teacher_data``; every random draw comes from one ``torch.Generator``
seeded with ``seed``, in this order):

1. Teacher network: ``depth`` fully connected hidden layers of ``width`` neurons (the paper:
   1 or 8 layers of 10) with a fixed activation (``"sigmoid"`` or ``"relu"``), then one output
   neuron with the logistic sigmoid. Every weight is drawn from the equal mixture of
   N(-1, 0.5) and N(+1, 0.5): a fair coin picks the mean -1 or +1, then a normal with
   standard deviation ``weight_sd`` is added. Every bias is drawn from N(0, ``bias_sd``).
2. Inputs: ``n_samples`` rows of ``n_features`` independent standard normal features
   (the paper does not state the input distribution; N(0, 1) is our choice).
3. Labels: ``label="threshold"`` (default) sets y = 1 when the teacher's output probability
   exceeds 0.5 (equivalently its logit is positive), so the labels are a deterministic function
   of x and a perfect student could reach 100 %. ``label="bernoulli"`` draws y ~ Bernoulli(p).
   ``label="median"`` (balanced; not in the paper) sets y = 1 when the teacher's logit exceeds
   its median over the ``n_samples`` inputs drawn: the same teacher and inputs, with the output
   neuron's bias shifted so that half of the examples fall on each side. The labels are still a
   deterministic function of x (a perfect student reaches 100 %) and the majority-class rate is
   50 % (up to ties), so an accuracy can be read without a baseline; the threshold used is
   stored in ``TeacherData.config["threshold"]``. The book's Table 1 uses ``"median"`` (the
   ``quick`` profile of ``farhadi-table1``); the ``paper`` profile keeps ``"threshold"``.
4. Optional rejection (not in the paper; off by default): with ``min_minority > 0``, steps 1-3
   are repeated with further draws from the same generator until the rarer label makes up at
   least ``min_minority`` of the examples. Deep sigmoid teachers often label (almost) every
   example the same way, which leaves nothing to learn; the number of draws used is recorded
   in ``TeacherData.config["draws"]``.

Readings of the paper we had to make (its PDF text lost the minus signs and does not say
whether 0.5 is a variance or a standard deviation):

- the mixture is N(-1, 0.5) and N(+1, 0.5) with equal weights (two components with the same
  printed mean would be a plain normal and no mixture at all);
- 0.5 is read as the standard deviation (``torch.normal(mean, std)``'s convention);
  pass ``weight_sd=bias_sd=0.5**0.5`` for the variance reading;
- the binary output is thresholded at 0.5 (the paper's accuracies near 98 % for the
  1-layer teachers fit a deterministic labelling better than Bernoulli noise).

The labels of a deep teacher can be unbalanced (with ``"threshold"``, deep sigmoid teachers
give from about 55 % to 90 % of one class); ``TeacherData.positive_fraction`` and
``TeacherData.majority_rate`` report it so a result can be read against the majority-class
rate, and ``label="median"`` removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

__all__ = ["TeacherData", "make_teacher", "make_teacher_data", "TEACHER_ACTIVATIONS", "LABEL_RULES"]

TEACHER_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}

#: how labels are made from the teacher's output (step 3 of the module docstring)
LABEL_RULES = ("threshold", "median", "bernoulli")


@dataclass
class TeacherData:
    """A simulated data set: inputs, binary labels and the teacher that labelled them.

    Attributes:
        x: float32 (n_samples, n_features).
        y: float32 (n_samples,) of 0.0 / 1.0.
        prob: the teacher's output probability per example.
        teacher: the teacher network (outputs logits; parameters frozen).
        config: the arguments that produced the data.
    """

    x: torch.Tensor
    y: torch.Tensor
    prob: torch.Tensor
    teacher: nn.Module
    config: dict

    @property
    def dataset(self) -> TensorDataset:
        """(x, y) as a TensorDataset."""
        return TensorDataset(self.x, self.y)

    @property
    def positive_fraction(self) -> float:
        """Share of examples labelled 1."""
        return float(self.y.mean())

    @property
    def majority_rate(self) -> float:
        """Accuracy of always predicting the more frequent label."""
        p = self.positive_fraction
        return max(p, 1.0 - p)


def _mixture(shape: tuple[int, ...], sd: float, gen: torch.Generator) -> torch.Tensor:
    sign = torch.randint(0, 2, shape, generator=gen).float() * 2.0 - 1.0
    return sign + sd * torch.randn(shape, generator=gen)


def make_teacher(n_features: int = 10, depth: int = 1, width: int = 10, activation: str = "sigmoid",
                 weight_sd: float = 0.5, bias_sd: float = 0.5,
                 generator: torch.Generator | None = None) -> nn.Sequential:
    """Build a teacher network (step 1 of the module docstring); it outputs one logit."""
    if activation not in TEACHER_ACTIVATIONS:
        raise ValueError(f"activation={activation!r}; allowed: {sorted(TEACHER_ACTIVATIONS)}")
    if depth < 1 or width < 1 or n_features < 1:
        raise ValueError(f"depth={depth}, width={width}, n_features={n_features}: all must be >= 1")
    if weight_sd < 0 or bias_sd < 0:
        raise ValueError(f"weight_sd={weight_sd}, bias_sd={bias_sd}: must be >= 0")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    fan_in = n_features
    for _ in range(depth):
        lin = nn.Linear(fan_in, width)
        layers += [lin, TEACHER_ACTIVATIONS[activation]()]
        fan_in = width
    layers.append(nn.Linear(fan_in, 1))
    with torch.no_grad():
        for m in layers:
            if isinstance(m, nn.Linear):
                m.weight.copy_(_mixture(tuple(m.weight.shape), weight_sd, gen))
                m.bias.copy_(bias_sd * torch.randn(m.bias.shape, generator=gen))
    net = nn.Sequential(*layers)
    net.requires_grad_(False)
    return net


def make_teacher_data(n_samples: int = 10_000, n_features: int = 10, depth: int = 1, width: int = 10,
                      activation: str = "sigmoid", seed: int = 0, label: str = "threshold",
                      weight_sd: float = 0.5, bias_sd: float = 0.5, min_minority: float = 0.0,
                      max_draws: int = 1000) -> TeacherData:
    """Simulate one data set of Farhadi et al. section 4.1 (procedure in the module docstring).

    Args:
        n_samples: examples (paper: 10,000).
        n_features: input features (paper: 10).
        depth: hidden layers of the teacher (paper: 1 or 8).
        width: neurons per hidden layer (paper: 10).
        activation: the teacher's hidden activation, ``"sigmoid"`` or ``"relu"``.
        seed: seeds the teacher, the inputs and (for Bernoulli labels) the labels.
        label: ``"threshold"`` (y = 1[p > 0.5]), ``"median"`` (y = 1[logit > median logit], balanced)
            or ``"bernoulli"`` (y ~ Bernoulli(p)).
        weight_sd, bias_sd: standard deviations of the weight mixture components and the biases.
        min_minority: redraw (step 4) until the rarer label has at least this share; 0 disables.
        max_draws: give up (ValueError) after this many draws.

    Returns:
        a :class:`TeacherData`.
    """
    if label not in LABEL_RULES:
        raise ValueError(f"label={label!r}; allowed: {', '.join(map(repr, LABEL_RULES))}")
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}; must be >= 1")
    if not 0.0 <= min_minority < 0.5:
        raise ValueError(f"min_minority={min_minority}; must lie in [0, 0.5)")
    gen = torch.Generator().manual_seed(int(seed))
    for draw in range(1, max_draws + 1):
        teacher = make_teacher(n_features, depth, width, activation, weight_sd, bias_sd, gen)
        x = torch.randn(n_samples, n_features, generator=gen)
        with torch.no_grad():
            logit = teacher(x).squeeze(1)
        prob = torch.sigmoid(logit)
        threshold = 0.0
        if label == "threshold":
            y = (logit > 0).float()
        elif label == "median":
            # the lower median: with n even, exactly n/2 logits exceed it when they are distinct
            threshold = float(logit.median())
            y = (logit > threshold).float()
        else:
            y = torch.bernoulli(prob, generator=gen)
        pos = float(y.mean())
        if min(pos, 1.0 - pos) >= min_minority:
            break
    else:
        raise ValueError(f"no teacher with a minority share >= {min_minority} in {max_draws} draws "
                         f"(depth={depth}, activation={activation!r}, seed={seed})")
    config = dict(n_samples=n_samples, n_features=n_features, depth=depth, width=width,
                  activation=activation, seed=seed, label=label, weight_sd=weight_sd, bias_sd=bias_sd,
                  min_minority=min_minority, draws=draw, threshold=threshold)
    return TeacherData(x=x, y=y, prob=prob, teacher=teacher, config=config)
