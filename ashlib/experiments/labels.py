"""How the papers name the activations, shared by the experiments and their figures."""

#: The ASH appendix's names of the activations.
LABELS = {"relu": "ReLU", "swish": "Swish", "silu": "SiLU", "ash": "ASH", "leaky-ash": "L-ASH",
          "fixed-ash-10": "F-ASH-10", "fixed-ash-50": "F-ASH-50", "fixed-ash-90": "F-ASH-90"}


def label(act: str) -> str:
    """The appendix's name of an activation (``fixed-ash-10`` -> ``F-ASH-10``)."""
    return LABELS.get(act, act)
