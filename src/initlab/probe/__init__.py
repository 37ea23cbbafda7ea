"""Probes: hooks that measure per-layer forward and backward statistics, ``diagnose``
(verdicts and fixes) and the training ``monitor``."""

from initlab.probe.diagnose import diagnose
from initlab.probe.hooks import Hook, Hooks, leftover_hooks, mha_fastpath
from initlab.probe.monitor import Monitor, monitor, read_history
from initlab.probe.report import LayerRow, Report
from initlab.probe.sites import Site, find_sites
from initlab.probe.verdict import LOST, TOLERANCE, VERDICTS

__all__ = ["LOST", "TOLERANCE", "VERDICTS", "Hook", "Hooks", "LayerRow", "Monitor", "Report",
           "Site", "diagnose", "find_sites", "leftover_hooks", "mha_fastpath", "monitor",
           "read_history"]
