"""Shared test settings."""

import textwrap

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_intra_op_thread():
    """Run torch on one intra-op thread for the whole suite.

    The suite's tensors are small: extra threads have little to share, and on a busy machine
    their synchronization made tiny forward/backward passes 10-50x slower (measured while
    the suite ran beside other jobs on 2 cores). Results do not depend on it.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def net_file(tmp_path, request):
    """The requesting test module's ``NET`` source (model factories), written to ``net.py``."""
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(request.module.NET))
    return path
