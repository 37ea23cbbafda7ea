"""initlab: choose, apply and verify weight initialization and activation functions.

>>> import initlab, torch
>>> model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.Tanh(), torch.nn.Linear(256, 10))
>>> plan = initlab.init_model(model, generator=0)   # exact tanh gain on the first layer
>>> round(initlab.gain("tanh"), 4)
1.5925
"""

from initlab import activations, data, init
from initlab.gains import gain, moments
from initlab.plan import InitPlan, init_model, plan

__version__ = "0.1.0"

__all__ = ["InitPlan", "activations", "data", "gain", "init", "init_model", "moments", "plan"]
