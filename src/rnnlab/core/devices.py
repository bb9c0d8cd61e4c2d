"""Which device a run uses: ``auto`` (CUDA, then Apple's MPS, then the CPU), ``cpu``,
``cuda``, ``cuda:N`` or ``mps``; and how a run record names it.

The data of every task here is small, so a run keeps its tensors where they were made
and each batch moves to the model's device as it is used (:meth:`Batch.to` is free when
it is there already, so CPU runs do exactly what they did before devices existed).
"""

from __future__ import annotations

import os

import torch

from rnnlab.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` asks for, refused in one line when this machine lacks it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", f"{name!r} is unknown; choose one of "
                          f"{', '.join(DEVICES)}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError("device", f"{name} is not available: this machine has no CUDA "
                              "device (or this torch build has no CUDA); use cpu or auto")
        if device.index is not None and device.index >= count:
            raise ConfigError("device", f"{name} is not available: this machine has {count} "
                              "CUDA device(s), numbered from 0")
    elif device.type == "mps" and not mps_available():
        raise ConfigError("device", "mps is not available on this machine; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError("device", f"{name!r} is unknown; choose one of {', '.join(DEVICES)}")
    return device


def describe_device(device: torch.device) -> dict:
    """What a run record says about its device (the GPU's model and CUDA and cuDNN
    versions on CUDA)."""
    if device.type != "cuda":
        return {"device": device.type}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device": f"cuda:{index}", "gpu": torch.cuda.get_device_name(index),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a model's parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def make_deterministic() -> None:
    """Deterministic kernels only (an operation without one raises), no cuDNN autotuning,
    no TF32: the settings docs/determinism.md lists for bit-reproducible GPU runs. They
    are process-wide, as torch keeps them."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
