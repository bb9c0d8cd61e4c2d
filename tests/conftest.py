"""Tests run on one thread: fast, deterministic, and immune to a busy second core."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Unit tests never touch the user's data cache unless they set RNNLAB_DATA themselves."""
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path_factory.mktemp("rnnlab-data")))
