"""One input through a run's model, step by step: what the explorer shows.

An :class:`Inspector` belongs to a task: it says which input widget the page shows
(``input_kind``), reads the task's input the way ``rnnlab predict`` does (the same
parsing and preprocessing functions of the task), and reads the answer out per
step. The per-step hidden state, cell state and gates come from
:mod:`rnnlab.core.internals`, named by the cell declaration that built the model.

Per-step answers of a classifier (MNIST, recall) are the model's answer had the
input ended at that step: the model run on every prefix (one packed batch), so
"which row made it sure" holds for bidirectional models too. A per-step model
(addition) answers at every step anyway.
"""

from __future__ import annotations

import io
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from rnnlab.core import images
from rnnlab.core.cells import Cell
from rnnlab.core.errors import CheckpointError, InputError, UserError
from rnnlab.core.internals import StepTrace, declared_cell, trace_batch, trace_recurrent
from rnnlab.serve.index import IndexedRun, inside
from rnnlab.tasks.addition import add_with_model, parse_operands
from rnnlab.tasks.addition.data import int_to_bits
from rnnlab.tasks.base import Task
from rnnlab.tasks.mnist import class_probabilities
from rnnlab.tasks.mnist.data import normalise
from rnnlab.tasks.recall import parse_sequence
from rnnlab.tasks.recall.data import DigitSequences
from rnnlab.tasks.registry import REGISTRY
from rnnlab.tasks.workflow import load_run_model

MAX_IMAGE_PIXELS = 4096 * 4096  # larger uploads are refused before any pixel is decoded
MAX_DIGITS = 200  # recall: the longest sequence inspected (the answer grows as steps x units)
MAX_BITS = 256  # addition: the longest operand inspected, in bits
MAX_DECIMAL_DIGITS = 78  # a 256-bit number has at most 78 decimal digits
CARRY_SAMPLE = 256  # sums whose states the carry unit is chosen over
MAX_CARRY_LENGTH = 16  # bits per sampled sum (the trained lengths, capped)
DECIMALS = 4  # per-step values are rounded to this many decimals: a smaller answer


class TooLargeError(InputError):
    """An input over the explorer's size limits (HTTP 413)."""


class NoInspectorError(UserError):
    """A run of a task the explorer has no inspector for."""


@dataclass(frozen=True)
class Reading:
    """One input as the model reads it, and as the page shows it."""

    x: Tensor  # (1, T, F) the model's input
    shown: dict  # the input for the page (pixels, digits, bits)
    notes: list[str] = field(default_factory=list)


def rounded(values: Tensor) -> np.ndarray:
    """float32 values rounded for the answer (the app's JSON encoder writes arrays whole)."""
    return np.round(values.detach().float().numpy(), DECIMALS)


# -- inspectors ------------------------------------------------------------------------
class Inspector(ABC):
    """A task's input widget, input reading and per-step read-out, over one model."""

    input_kind: ClassVar[str]  # the page's widget: "image" | "digits" | "bits"
    body: ClassVar[str] = "json"  # how the input arrives: "json" | "multipart" (field file)
    step_name: ClassVar[str] = "step"

    def __init__(self, task: Task, model: nn.Module):
        self.task, self.model = task, model
        self.cell: Cell | None = declared_cell(model.rnn)

    def describe(self) -> dict:
        """What the page needs to know before any input: widget, cell, gates."""
        cfg = self.model.cfg
        return {"input_kind": self.input_kind, "body": self.body, "step_name": self.step_name,
                "cell": cfg.cell, "gates": list(self.cell.gates if self.cell else ()),
                "equations": self.cell.equations if self.cell else "",
                "has_cell_state": bool(self.cell and self.cell.has_cell_state),
                "layers": cfg.num_layers, "directions": cfg.directions,
                "hidden": cfg.hidden_size, **self.task_info()}

    def task_info(self) -> dict:
        return {}

    @abstractmethod
    def read(self, payload: Any) -> Reading:
        """The input (upload bytes or parsed JSON) as the model reads it; an InputError
        (422) or TooLargeError (413) for anything else."""

    @abstractmethod
    def answer(self, reading: Reading, traces: list[StepTrace]) -> dict:
        """``prediction``, per-step ``probabilities`` and anything else the task shows."""

    @torch.no_grad()
    def inspect(self, payload: Any) -> dict:
        reading = self.read(payload)
        traces = trace_recurrent(self.model.rnn, reading.x)
        has_cell = any(t.cell is not None for t in traces)
        return {"task": self.task.name, "steps": reading.x.shape[1], "input": reading.shown,
                "notes": reading.notes, **self.answer(reading, traces),
                "layers": [{"layer": t.layer, "direction": t.direction_name} for t in traces],
                "hidden": [rounded(t.hidden) for t in traces],
                "cell": [rounded(t.cell) for t in traces] if has_cell else None,
                "gates": {name: [rounded(t.gates[name]) for t in traces]
                          for name in traces[0].gates}}


@torch.no_grad()
def prefix_probabilities(model: nn.Module, x: Tensor, traces: list[StepTrace]) -> Tensor:
    """(T, C): a classifier's class probabilities had ``x`` (1, T, F) ended at each step.

    One direction: the answer after step t reads the last layer's h_t (what both readouts
    see at a prefix's end), so the traced states give every step in one matmul. Two
    directions: the backward direction of a prefix starts at its own end, so the model
    runs on every prefix."""
    steps = x.shape[1]
    if model.cfg.directions == 1:
        return model.head(traces[-1].hidden).softmax(dim=-1)  # (T, H) -> (T, C)
    if model.cfg.readout == "h_n":  # one packed batch of the T prefixes
        logits = model(x.expand(steps, -1, -1), torch.arange(1, steps + 1))
    else:  # the last-step readout cannot pack: one prefix at a time
        logits = torch.cat([model(x[:, :t]) for t in range(1, steps + 1)])
    return logits.softmax(dim=-1)  # (T, C)


def read_upload(data: bytes, dataset: str) -> np.ndarray:
    """An uploaded image file -> uint8 (28, 28), exactly as ``rnnlab predict`` reads a
    file (core.images: first frame, EXIF orientation, MNIST preprocessing); images over
    ``MAX_IMAGE_PIXELS`` are refused from their header, before decoding."""
    if not data:
        raise InputError("the upload is empty (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise TooLargeError(f"the image has {width}x{height} pixels, more than "
                                        f"{MAX_IMAGE_PIXELS:,}; send a smaller one")
                img.seek(0)
                img.load()
                return images.preprocess_image(images.upright(img), "the image", dataset)
    except UserError:
        raise
    except UnidentifiedImageError:
        raise InputError("the upload is not an image Pillow can read "
                         "(PNG, JPEG, BMP, GIF, TIFF...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLargeError("the image decompresses to too many pixels") from None
    except Exception as err:  # Pillow's decoders raise many types on corrupt data
        raise InputError(f"the image is truncated or corrupt ({type(err).__name__})") from None


class ImageInspector(Inspector):
    """MNIST / Fashion-MNIST: a drawn or uploaded image, read row by row."""

    input_kind = "image"
    body = "multipart"
    step_name = "row"

    def task_info(self) -> dict:
        return {"classes": self.task.class_names, "dataset": self.task.config.dataset}

    def read(self, payload: Any) -> Reading:
        pixels = read_upload(payload, self.task.config.dataset)  # (28, 28) uint8
        x = normalise(torch.from_numpy(pixels)[None], self.task.config.dataset)  # (1, 28, 28)
        return Reading(x, {"pixels": pixels.tolist()})

    def answer(self, reading: Reading, traces: list[StepTrace]) -> dict:
        pixels = np.asarray(reading.shown["pixels"], dtype=np.uint8)[None]  # (1, 28, 28)
        final = class_probabilities(self.model, pixels, self.task.config.dataset)[0]  # (C,)
        label = int(final.argmax())
        return {"prediction": {"label": label, "name": self.task.class_names[label],
                               "probability": float(final[label]),
                               "probabilities": final.tolist()},
                "classes": self.task.class_names,
                "probabilities": rounded(prefix_probabilities(self.model, reading.x, traces))}


def json_field(payload: Any, name: str) -> Any:
    if not isinstance(payload, dict):
        raise InputError(f"send a JSON object with {name!r}, not a {type(payload).__name__}")
    if name not in payload:
        raise InputError(f"the JSON object has no {name!r}")
    return payload[name]


class DigitsInspector(Inspector):
    """Recall: a typed digit sequence; the answer is the digit at position K."""

    input_kind = "digits"
    step_name = "digit"

    def task_info(self) -> dict:
        cfg = self.task.config
        return {"k": cfg.k, "min_length": cfg.min_length, "max_length": cfg.max_length,
                "max_digits": MAX_DIGITS, "classes": [str(d) for d in range(10)]}

    def read(self, payload: Any) -> Reading:
        digits = json_field(payload, "digits")
        if isinstance(digits, list):
            if not all(isinstance(d, int) and not isinstance(d, bool) for d in digits):
                raise InputError("'digits' must be a string such as \"3 1 4\" or a list of ints")
        elif not isinstance(digits, str):
            raise InputError(f"'digits' must be a string or a list, not a "
                             f"{type(digits).__name__}")
        if len(digits) > (MAX_DIGITS if isinstance(digits, list) else 4 * MAX_DIGITS):
            raise InputError(f"the sequence is too long: the explorer reads up to {MAX_DIGITS} "
                             "digits")
        parsed = parse_sequence([digits], self.task.config.k, MAX_DIGITS)
        cfg, notes = self.task.config, []
        if not cfg.min_length <= len(parsed) <= cfg.max_length:
            notes.append(f"length {len(parsed)} is outside the trained lengths "
                         f"{cfg.min_length}..{cfg.max_length}")
        x = DigitSequences.from_config(cfg).encode(parsed)  # (1, L, 10) one-hot
        return Reading(x, {"digits": parsed, "k": cfg.k}, notes)

    def answer(self, reading: Reading, traces: list[StepTrace]) -> dict:
        final = self.model(reading.x).softmax(dim=-1)[0]  # (10,) as rnnlab predict computes it
        label = int(final.argmax())
        return {"prediction": {"label": label, "name": str(label),
                               "probability": float(final[label]),
                               "probabilities": final.tolist(),
                               "true": reading.shown["digits"][self.task.config.k]},
                "classes": [str(d) for d in range(10)],
                "probabilities": rounded(prefix_probabilities(self.model, reading.x, traces))}


def carry_bits(a: int, b: int, steps: int) -> list[int]:
    """The carry out of each step of a + b (least significant step first)."""
    carries, carry = [], 0
    for t in range(steps):
        carry = (((a >> t) & 1) + ((b >> t) & 1) + carry) >> 1
        carries.append(carry)
    return carries


def correlations(values: Tensor, target: Tensor) -> Tensor:
    """Pearson correlation of each column of ``values`` (N, H) with ``target`` (N,); 0 for
    a unit that never changes."""
    v = values - values.mean(dim=0)
    t = target - target.mean()
    scale = v.norm(dim=0) * t.norm()
    return torch.where(scale > 0, (v * t[:, None]).sum(dim=0) / scale.clamp_min(1e-12), 0.0)


class BitsInspector(Inspector):
    """Addition: two typed numbers, least significant bit first; a sum bit per step."""

    input_kind = "bits"
    step_name = "bit"

    def __init__(self, task: Task, model: nn.Module):
        super().__init__(task, model)
        self.carry_unit = self.find_carry_unit()

    def task_info(self) -> dict:
        return {"max_bits": MAX_BITS, "train_lengths": self.task.config.train_lengths,
                "carry_unit": self.carry_unit}

    def sample_length(self) -> int:
        return max(2, min(max(self.task.config.train_length_list), MAX_CARRY_LENGTH))

    @torch.no_grad()
    def find_carry_unit(self) -> dict:
        """The state unit whose activation follows the carry best, over a fixed sample of
        sums of the trained lengths (capped): (layer, direction, state, unit, r)."""
        steps = self.sample_length()
        generator = torch.Generator().manual_seed(0)
        bits = torch.randint(0, 2, (CARRY_SAMPLE, 2, steps), generator=generator)
        bits[:, :, -1] = 0  # the sum fits in the steps, as in training
        numbers = [(sum(int(v) << i for i, v in enumerate(row[0])),
                    sum(int(v) << i for i, v in enumerate(row[1]))) for row in bits]
        carry = torch.tensor([carry_bits(a, b, steps) for a, b in numbers], dtype=torch.float32)
        x = bits.transpose(1, 2).float()  # (N, T, 2)
        best = {"correlation": 0.0}
        for t in trace_batch(self.model.rnn, x):
            for state, values in (("hidden", t.hidden), ("cell", t.cell)):
                if values is None:
                    continue
                r = correlations(values.reshape(-1, values.shape[-1]), carry.reshape(-1))
                unit = int(r.abs().argmax())
                if abs(float(r[unit])) > abs(best["correlation"]):
                    best = {"layer": t.layer, "direction": t.direction_name, "state": state,
                            "unit": unit, "correlation": round(float(r[unit]), 4)}
        return {**best, "sample": f"{CARRY_SAMPLE} sums of {steps} bits"}

    def operands(self, payload: Any) -> tuple[str, str]:
        """The two numbers as binary strings; ``base`` 10 reads decimal strings."""
        base = payload.get("base", 2) if isinstance(payload, dict) else 2
        numbers = [json_field(payload, "a"), json_field(payload, "b")]
        if base not in (2, 10):
            raise InputError(f"'base' must be 2 or 10, got {str(base)[:20]}")
        for i, n in enumerate(numbers):
            if isinstance(n, bool) or not isinstance(n, int | str):
                raise InputError(f"number {i + 1} must be a string or an int, "
                                 f"not a {type(n).__name__}")
            if base == 10 and isinstance(n, str):
                if not n.isdecimal() or not n.isascii() or len(n) > MAX_DECIMAL_DIGITS:
                    raise InputError(f"number {i + 1} ({n[:40]!r}) is not a decimal number "
                                     f"of at most {MAX_DECIMAL_DIGITS} digits")
                numbers[i] = int(n)
            if isinstance(numbers[i], int) and numbers[i].bit_length() > MAX_BITS:
                raise InputError(f"number {i + 1} has more than {MAX_BITS} bits")
        return parse_operands(numbers, MAX_BITS)

    def read(self, payload: Any) -> Reading:
        first, second = self.operands(payload)
        steps = max(len(first), len(second)) + 1  # one more step for the carry out
        a, b = int(first, 2), int(second, 2)
        x = torch.tensor([int_to_bits(a, steps), int_to_bits(b, steps)],
                         dtype=torch.float32).T[None]  # (1, T, 2) least significant bit first
        shown = {"a": first, "b": second, "a_bits": int_to_bits(a, steps),
                 "b_bits": int_to_bits(b, steps), "sum_bits": int_to_bits(a + b, steps),
                 "carry": carry_bits(a, b, steps)}
        return Reading(x, shown)

    def answer(self, reading: Reading, traces: list[StepTrace]) -> dict:
        shown = reading.shown
        result = add_with_model(self.model, shown["a"], shown["b"])  # as rnnlab predict adds
        p_one = self.model(reading.x).sigmoid()[0]  # (T,) probability that the sum bit is 1
        unit = self.carry_unit
        follows = next((t for t in traces if t.layer == unit.get("layer")
                        and t.direction_name == unit.get("direction")), None)
        values = None
        if follows is not None:
            state = follows.hidden if unit["state"] == "hidden" else follows.cell
            values = rounded(state[:, unit["unit"]])
        return {"prediction": {**result, "bits": (p_one > 0.5).long().tolist()},
                "probabilities": rounded(p_one),
                "carry_unit": {**unit, "values": values}}


# the inspector of each input kind a task declares (``Task.input_kind``)
INSPECTORS: dict[str, type[Inspector]] = {
    inspector.input_kind: inspector
    for inspector in (ImageInspector, DigitsInspector, BitsInspector)}


def inspector_of(task: str) -> type[Inspector] | None:
    """The inspector for runs of ``task``: the one of the input kind the task declares."""
    task_class = REGISTRY.classes.get(task)
    kind = task_class.input_kind if task_class is not None else None
    return INSPECTORS.get(kind) if kind is not None else None


def input_kind(task: str) -> str | None:
    inspector = inspector_of(task)
    return inspector.input_kind if inspector is not None else None


class InspectorCache:
    """Inspectors (a loaded model each) of the most recently used runs, at most ``size``:
    a model is loaded once per run and checkpoint, not per request."""

    def __init__(self, size: int = 8):
        self.size = size
        self.inspectors: OrderedDict[tuple, Inspector] = OrderedDict()
        self.lock = threading.Lock()

    def cached(self, run: IndexedRun) -> Inspector | None:
        """The run's inspector if it is loaded (its checkpoint unchanged), else None; never
        loads, so the app asks without a worker thread."""
        checkpoint = run.path / "checkpoints" / "best.pt"
        try:
            key = (run.id, checkpoint.stat().st_mtime_ns)
        except OSError:
            return None
        with self.lock:
            found = self.inspectors.get(key)
            if found is not None:
                self.inspectors.move_to_end(key)
            return found

    def get(self, run: IndexedRun) -> Inspector:
        inspector = inspector_of(run.task)
        if inspector is None:
            raise NoInspectorError(f"the explorer has no inspector for {run.task} runs")
        checkpoint = run.path / "checkpoints" / "best.pt"
        if not inside(checkpoint, run.root):
            raise CheckpointError("the run has no checkpoint inside the served folders")
        key = (run.id, checkpoint.stat().st_mtime_ns)
        with self.lock:  # one load at a time: concurrent first requests load once
            if key not in self.inspectors:
                task, model = load_run_model(run.record, "cpu")
                self.inspectors[key] = inspector(task, model)
                while len(self.inspectors) > self.size:
                    self.inspectors.popitem(last=False)
            self.inspectors.move_to_end(key)
            return self.inspectors[key]
