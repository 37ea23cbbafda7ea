"""The README's Python example runs as written and says what it claims."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert "InitPlan for Sequential" in printed.getvalue()
    assert "healthy" in lines  # LSUV on a 20-layer tanh MLP leaves it healthy
    gelu_gain, tanh_critical = map(float, lines[-1].split())
    assert abs(gelu_gain - 1.5335) < 1e-4 and 1.5 < tanh_critical < 2.0
