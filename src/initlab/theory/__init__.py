"""Mean-field signal propagation in deep random networks (Poole et al. 2016; Schoenholz et al.
2017, "Deep Information Propagation").

For any activation (a registered name, an ``nn.Module`` or a callable) and weights
N(0, sigma_w2 / fan_in), biases N(0, sigma_b2):

>>> from initlab import theory
>>> theory.critical_sigma_w2("relu")            # He init is on the edge of chaos
2.0
>>> round(theory.critical_sigma_w2("tanh", 0.05), 4)
1.761
>>> mf = theory.mean_field("tanh", 2.0, 0.05)   # q*, c*, chi_1, xi_q, xi_c, phase, ...
>>> mf.phase, round(mf.trainable_depth)
('chaotic', 151)

``length_map`` / ``correlation_map`` are the layer-to-layer maps, ``phase_diagram`` solves a
whole (sigma_w2, sigma_b2) grid at once and draws it. See docs/theory.md.
"""

from initlab.theory.diagram import PhaseDiagram, phase_diagram
from initlab.theory.maps import correlation_map, length_map
from initlab.theory.meanfield import (
    MeanField,
    critical_line,
    critical_sigma_w2,
    mean_field,
    phase,
)

__all__ = ["MeanField", "PhaseDiagram", "correlation_map", "critical_line", "critical_sigma_w2",
           "length_map", "mean_field", "phase", "phase_diagram"]
