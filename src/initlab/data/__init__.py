"""Data sets for initlab, checked on load: ``load(name) -> Dataset``.

``names()`` lists them: Fashion-MNIST (Debian's ``dataset-fashion-mnist``),
any MNIST-format IDX folder, scikit-learn's bundled digits, MNIST-1D
(generated locally) and a synthetic teacher-network task. ``"auto"`` picks
Fashion-MNIST when installed, else digits. See ``docs/datasets.md``.
"""

from initlab.data.dataset import Dataset, load, names
from initlab.data.idx import read_idx, write_idx

__all__ = ["Dataset", "load", "names", "read_idx", "write_idx"]
