"""The ``--threads`` default: the usable cores less those other processes keep busy."""

import pytest
import torch

from rnnlab.core import threads
from rnnlab.core.errors import UserError
from rnnlab.core.threads import configure_threads


@pytest.mark.parametrize("busy,expected",
                         [(0.0, 2), (0.4, 2), (0.9, 1), (1.6, 1), (2.0, 1), (7.0, 1)])
def test_default_threads_leaves_busy_cores_alone(monkeypatch, busy, expected):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda interval=0.1: busy)
    assert threads.default_threads() == expected


def test_busy_cores_is_a_fraction_of_the_machine():
    assert 0.0 <= threads.busy_cores(0.02) <= (torch.get_num_threads() + 64)


def test_configure_threads_never_raises_the_count(monkeypatch):
    monkeypatch.setattr(threads, "default_threads", lambda: 4)
    before = torch.get_num_threads()  # 1 in the test suite (conftest)
    try:
        assert configure_threads(None) == before
        monkeypatch.setattr(threads, "default_threads", lambda: 1)
        assert configure_threads(None) == 1
        assert configure_threads(2) == 2  # an explicit --threads is obeyed
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError):
        configure_threads(0)
