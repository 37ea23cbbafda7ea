"""Data-dependent initialization: LSUV and data-aware variance propagation.

* :func:`lsuv` -- Mishkin & Matas (2016): orthonormal weights, then each layer rescaled in
  execution order until its output std on a real batch is the target.
* :func:`propagated_gains` -- the gain of every layer such that its output has unit variance
  given the mean and variance its input really has, propagated through the traced graph
  (:func:`propagate` returns the moments too).
"""

from initlab.adaptive.lsuv import LSUVResult, LSUVRow, lsuv
from initlab.adaptive.moments import Signal
from initlab.adaptive.propagate import Propagation, propagate, propagated_gains

__all__ = ["LSUVResult", "LSUVRow", "Propagation", "Signal", "lsuv", "propagate",
           "propagated_gains"]
