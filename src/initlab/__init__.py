"""initlab: choose, apply and verify weight initialization and activation functions.

>>> import initlab, torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 10))
>>> plan = initlab.init_model(model, generator=0)   # exact tanh gain on the first layer
>>> round(initlab.gain("tanh"), 4)
1.5925
"""

from initlab import activations, data, init, models, theory
from initlab.adaptive import lsuv, propagated_gains
from initlab.gains import gain, moments
from initlab.plan import InitPlan, init_model, plan
from initlab.probe import diagnose, monitor
from initlab.sweep import SweepSpec, run_sweep

__version__ = "0.1.0"

__all__ = ["InitPlan", "SweepSpec", "activations", "data", "diagnose", "gain", "init",
           "init_model", "lsuv", "models", "moments", "monitor", "plan", "propagated_gains",
           "run_sweep", "theory"]
