"""Tests run on one thread: fast, deterministic, and immune to a busy second core."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Unit tests never touch the user's data cache unless they set RNNLAB_DATA themselves."""
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path_factory.mktemp("rnnlab-data")))


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory):
    """A data root holding a fake, learnable, full-size MNIST (written once per session)."""
    from fakes import write_fake_mnist

    return write_fake_mnist(tmp_path_factory.mktemp("fake-mnist"))


@pytest.fixture
def fake_mnist(fake_mnist_root, monkeypatch):
    monkeypatch.setenv("RNNLAB_DATA", str(fake_mnist_root))
    return fake_mnist_root
