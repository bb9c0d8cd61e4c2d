"""A pickle reader that can rebuild plain numpy arrays and nothing else.

Unpickling calls whatever callables the pickle names, so a pickle from the
internet may run any code. :class:`NumpyOnlyUnpickler` resolves only the few
numpy names that an array pickled with protocol 2 needs (the form of the
classic ``mnist.pkl.gz``) and refuses every other global with a UserError.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from rnnlab.core.errors import DataError, UserError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2 has no numpy._core
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# (module, name) as written in the pickle -> the object it may resolve to. The
# classic MNIST pickle (numpy 1, Python 2) spells the constructor's module
# numpy.core.multiarray; numpy 2 moved it to numpy._core.multiarray.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` allows only :data:`ALLOWED_GLOBALS`."""

    source = "<pickle>"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.source}: refusing to unpickle: it names {module}.{name}, "
                "which is not one of the numpy array names allowed"
            ) from None


def load_numpy_pickle(data: bytes, source: str) -> Any:
    """Unpickle ``data`` allowing only numpy array reconstruction.

    Python 2 pickles are read with ``encoding="latin1"``, which numpy needs to
    turn their byte strings back into array buffers.

    Raises:
        UserError: the pickle names a global outside :data:`ALLOWED_GLOBALS`,
            or is damaged in any way.
    """
    unpickler = NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1")
    unpickler.source = source
    try:
        return unpickler.load()
    except UserError:
        raise
    except Exception as err:
        # A damaged pickle can fail in any of numpy's constructors (ValueError,
        # TypeError, MemoryError, ...), not only with UnpicklingError.
        raise DataError(f"{source}: damaged pickle ({type(err).__name__}: {err})") from None
