"""ashlib's activations as registered PyTorch operators (``torch.ops.ashlib.*``).

Each operator has a schema, a fake (shape) implementation for tracing, an autograd formula whose
first-order backward is itself an operator (``*_backward``) and whose higher-order backward is
the differentiable reference composite, and per-device kernels chosen inside the operator:

* :mod:`ashlib.ops.ash_family`: ``ash`` (and Leaky ASH), ``hard_ash``, ``topk_ash`` over a
  (rows, elements) view; backends :mod:`ashlib.ops.native` (C, CPU float32/bfloat16),
  :mod:`ashlib.ops.triton_ash` (CUDA) and chunked ATen ops;
* :mod:`ashlib.ops.elementwise`: ``swish``, ``adaptive_relu`` (exponential CDF),
  ``adaptive_gumbel``.

Nothing here imports :mod:`ashlib.functional` or the modules: the layering runs
reference -> ops -> functional -> modules.
"""

from . import ash_family, elementwise

__all__ = ["ash_family", "elementwise"]
