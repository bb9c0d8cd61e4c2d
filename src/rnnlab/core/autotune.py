"""The measured choice of ``--backend auto``: which training path of a recurrent layer is
fastest here, timed where the run runs and cached per machine.

The compiled backend's gain over PyTorch's own modules depends on the CPU, the cell,
the shapes and the thread count (1.5x on one machine is 0.8x on another), so no
constant can decide it. Instead, the first time a run meets a configuration, a few
training steps of each candidate path (stock; compiled where the layer supports it) are
timed in the run's precision, and the times are kept in ``autotune.json`` in the user
cache (beside the data: ``$RNNLAB_DATA``, else ``$XDG_CACHE_HOME/rnnlab``, else
``~/.cache/rnnlab``), under a :class:`TuneKey` naming the CPU model, the torch version,
the layer's cell and shapes, the threads, the precision and the device type. Later runs
read the times instead of timing.

The rule (:func:`pick`): compiled only when its step is faster than stock's by more than
:data:`NOISE_MARGIN` and the time it saves over the run's steps repays compiling; a
run that measured has compiled already (nothing left to repay), a run that reads the
cache counts the compile time recorded with the times (the first compile's, an upper
bound once inductor's on-disk cache is warm). A run shorter on stock than measuring it
(:func:`measuring_seconds`: a compile and a few steps of each path) is not timed at all:
measuring would more than double it (a ``--dry-run``, a test, a toy run). Any longer run
is timed on its first use, since the times are kept for every later run of its shape.

With ``--precision auto`` (the default), the choice is made in each precision a run may
train in here (fp32, and bf16 on a CPU with bf16 matmul hardware), each under its own
key, and :func:`pick_precision` takes bf16 only where its picked step beats fp32's by
more than :data:`NOISE_MARGIN`.

This module knows nothing about how a path runs: :mod:`rnnlab.core.backends` hands it
one step function per path (:func:`time_steps`) or a whole measurement (:func:`choose`).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from rnnlab.core.data import default_data_root
from rnnlab.core.fileio import atomic_write_json

PATHS = ("stock", "compiled")
CACHE_NAME = "autotune.json"
CACHE_VERSION = 1
CPUINFO = "/proc/cpuinfo"

# compiled must beat stock by more than this share of stock's step time: the spread of
# repeated medians on a quiet machine is 1-3%, so a smaller gain may be noise
NOISE_MARGIN = 0.05
# what a compile is taken to cost before this machine has recorded any (cold compiles took
# 3.8-5.8 s on a 2-core Zen 5); once the cache holds this machine's compile times, their
# median is used instead (2-3x less once inductor's on-disk cache is warm)
FIRST_COMPILE_SECONDS = 5.0
WARMUP_STEPS = 1  # per path, before timing: the first steps allocate buffers
MIN_ROUNDS, MAX_ROUNDS = 3, 9  # timed steps per path: at least 3, more while under budget
ROUND_BUDGET_SECONDS = 1.0  # rounds go on past MIN_ROUNDS while the rounds so far took less


class AutotuneCacheWarning(UserWarning):
    """The autotune cache could not be read or written; timing goes on without it."""


def cpu_model(path: str = CPUINFO) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` says."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class TuneKey:
    """Everything a step time depends on that a run can change."""

    cell: str
    bidirectional: bool
    layers: int
    batch: int
    steps: int  # T
    features: int  # F
    hidden: int
    threads: int
    precision: str
    device: str = "cpu"
    cpu: str = field(default_factory=cpu_model)
    torch_version: str = torch.__version__

    def text(self) -> str:
        """The key as the cache file writes it (one line, readable, stable)."""
        return " ".join(f"{name}={value}" for name, value in asdict(self).items())

    def machine_text(self) -> str:
        """The end of :meth:`text` that names the machine: device, CPU, torch."""
        return f"device={self.device} cpu={self.cpu} torch_version={self.torch_version}"

    def shape(self) -> str:
        """The layer and batch, for progress lines and tables."""
        bi = "bi" if self.bidirectional else ""
        layers = f"x{self.layers}" if self.layers > 1 else ""
        return (f"{bi}{self.cell}({self.hidden}){layers} B={self.batch} T={self.steps} "
                f"F={self.features} {self.precision} {self.threads} thread"
                f"{'s' if self.threads > 1 else ''}")


@dataclass(frozen=True)
class Timing:
    """One measurement: median milliseconds per training step of each path timed, and the
    seconds the compiled path's first compile took (0 when it was not compiled)."""

    ms_per_step: Mapping[str, float]
    compile_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"ms_per_step": dict(self.ms_per_step), "compile_seconds": self.compile_seconds}

    @classmethod
    def from_dict(cls, found: object) -> Timing | None:
        """A cache entry back, or None when it is not one (a hand-edited or foreign file)."""
        if not isinstance(found, dict):
            return None
        steps, seconds = found.get("ms_per_step"), found.get("compile_seconds", 0.0)
        if (not isinstance(steps, dict) or not isinstance(seconds, int | float)
                or not all(p in PATHS and isinstance(v, int | float) and v > 0
                           for p, v in steps.items())):
            return None
        return cls({p: float(v) for p, v in steps.items()}, float(seconds))


@dataclass(frozen=True)
class Choice:
    """Which path a layer runs and why: ``measured`` (timed by this run), ``cached`` (times
    from the cache), ``forced`` (a backend named explicitly), ``not supported`` (compiled
    cannot run this layer), ``short run``, ``off the CPU``, ``compile failed``, ...;
    ``detail`` says more in a few words."""

    path: str
    why: str
    ms_per_step: Mapping[str, float] = field(default_factory=dict)
    compile_seconds: float = 0.0
    detail: str = ""
    precision: str = "fp32"  # what the layer trains in: the run's, or --precision auto's pick

    @property
    def timed(self) -> bool:
        """Whether the path was picked on times (measured now or read from the cache)."""
        return self.why in ("measured", "cached")

    def step_ms(self) -> float:
        """The picked path's milliseconds per training step (timed choices only)."""
        return self.ms_per_step[self.path]

    def record(self, requested: str) -> dict:
        """The run record's ``backend`` entry."""
        found = {"requested": requested, "path": self.path, "precision": self.precision,
                 "why": self.why,
                 "ms_per_step": {p: round(v, 3) for p, v in self.ms_per_step.items()}}
        if self.compile_seconds:
            found["compile_seconds"] = round(self.compile_seconds, 2)
        if self.detail:
            found["detail"] = self.detail
        return found


def measuring_seconds(stock_seconds: float, compile_seconds: float) -> float:
    """What timing the paths costs a run: the compile, then :data:`WARMUP_STEPS` and at
    least :data:`MIN_ROUNDS` steps of each of the two paths (a compiled step taken as
    long as a stock one)."""
    return compile_seconds + 2 * (WARMUP_STEPS + MIN_ROUNDS) * stock_seconds


def pick(timing: Timing, train_steps: int, compile_seconds: float) -> str:
    """``compiled`` when its step beats stock's by more than the noise margin and the
    time saved over ``train_steps`` steps repays ``compile_seconds``; else ``stock``."""
    stock, compiled = timing.ms_per_step.get("stock"), timing.ms_per_step.get("compiled")
    if stock is None or compiled is None or compiled >= stock * (1 - NOISE_MARGIN):
        return "stock"
    saved_seconds = (stock - compiled) / 1e3 * train_steps
    return "compiled" if saved_seconds >= compile_seconds else "stock"


def pick_precision(choices: Mapping[str, Choice]) -> Choice:
    """``--precision auto``'s choice among the path choices made in each precision, fp32's
    first: another precision only where its picked step beats fp32's picked step by more
    than the noise margin (the fastest such); fp32's choice where it was not timed (a short
    run, a layer compiled cannot run). The returned times name path and precision."""
    fp32 = choices["fp32"]
    timed = [choice for choice in choices.values() if choice.timed]
    if not fp32.timed or len(timed) == 1:
        return fp32
    faster = [c for c in timed if c.step_ms() < fp32.step_ms() * (1 - NOISE_MARGIN)]
    best = min(faster, key=Choice.step_ms) if faster else fp32
    times = {f"{path} {c.precision}": ms for c in timed for path, ms in c.ms_per_step.items()}
    why = "measured" if any(c.why == "measured" for c in timed) else "cached"
    return replace(best, why=why, ms_per_step=times)


def time_steps(steps: Mapping[str, Callable[[], None]],
               clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median milliseconds of each step function, after :data:`WARMUP_STEPS` untimed
    calls each; the paths take turns, one step each per round, so that load from other
    processes hits them alike. At least :data:`MIN_ROUNDS` rounds, more (up to
    :data:`MAX_ROUNDS`) while the rounds so far took under :data:`ROUND_BUDGET_SECONDS`."""
    for step in steps.values():
        for _ in range(WARMUP_STEPS):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    spent = 0.0
    for rounds in range(MAX_ROUNDS):
        if rounds >= MIN_ROUNDS and spent >= ROUND_BUDGET_SECONDS:
            break
        for name, step in steps.items():
            started = clock()
            step()
            elapsed = clock() - started
            times[name].append(elapsed)
            spent += elapsed
    return {name: 1e3 * statistics.median(found) for name, found in times.items()}


class TuneCache:
    """Measured step times by :meth:`TuneKey.text`, in a JSON file. A file that cannot be
    read or is not a cache is ignored with a warning (and replaced at the next write);
    a file that cannot be written costs a warning, never the run."""

    def __init__(self, path: Path | None = None):
        self.path = path if path is not None else default_data_root() / CACHE_NAME
        self.complaints: set[str] = set()  # each said once

    def entries(self) -> dict[str, dict]:
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            self.complain(f"cannot read {self.path} ({type(err).__name__}); ignoring it")
            return {}
        if (not isinstance(found, dict) or found.get("version") != CACHE_VERSION
                or not isinstance(found.get("entries"), dict)):
            self.complain(f"{self.path} is not an rnnlab autotune cache (version "
                          f"{CACHE_VERSION}); ignoring it")
            return {}
        return found["entries"]

    def get(self, key: TuneKey) -> Timing | None:
        return Timing.from_dict(self.entries().get(key.text()))

    def compile_estimate(self, key: TuneKey) -> float:
        """What compiling is expected to take on ``key``'s machine (CPU, torch, device):
        the median of the compile times recorded for it, else
        :data:`FIRST_COMPILE_SECONDS`."""
        machine = key.machine_text()
        recorded = [timing.compile_seconds for text, entry in self.entries().items()
                    if text.endswith(machine) and (timing := Timing.from_dict(entry))
                    and timing.compile_seconds > 0]
        return statistics.median(recorded) if recorded else FIRST_COMPILE_SECONDS

    def put(self, key: TuneKey, timing: Timing) -> None:
        entries = {**self.entries(), key.text(): timing.to_dict()}
        try:
            atomic_write_json(self.path, {"version": CACHE_VERSION, "entries": entries})
        except OSError as err:
            self.complain(f"cannot write {self.path} ({err.strerror or err}); "
                          "the times measured are not kept")

    def complain(self, message: str) -> None:
        if message not in self.complaints:
            self.complaints.add(message)
            warnings.warn(message, AutotuneCacheWarning, stacklevel=3)


@dataclass(frozen=True)
class Measurer:
    """How :func:`choose` times a layer: ``estimate()`` returns stock's seconds per step
    from a step or two (is the run worth timing?), ``measure(paths)`` the full
    :class:`Timing` of those paths. Supplied by the backend that knows how paths run."""

    estimate: Callable[[], float]
    measure: Callable[[tuple[str, ...]], Timing]


def choose(key: TuneKey, train_steps: int, measurer: Measurer, cache: TuneCache,
           log: Callable[[str], None] | None = None, timings: int = 1) -> Choice:
    """The path for a layer that both paths can run: from the cache when it has ``key``,
    else measured (and cached), else stock for a run too short to time. ``timings``: how
    many such measurements the run's choice takes (``--precision auto``: one a precision),
    each counted in what timing would cost the run."""
    precision = key.precision
    cached = cache.get(key)
    if cached is not None:
        path = pick(cached, train_steps, cached.compile_seconds)
        return Choice(path, "cached", cached.ms_per_step, cached.compile_seconds,
                      precision=precision)
    stock_seconds = measurer.estimate()
    cost = timings * measuring_seconds(stock_seconds, cache.compile_estimate(key))
    if stock_seconds * train_steps < cost:
        return Choice("stock", "short run", {"stock": 1e3 * stock_seconds},
                      detail=f"about {stock_seconds * train_steps:.1f} s on stock, shorter "
                      f"than timing the paths (about {cost:.1f} s)", precision=precision)
    if log is not None:
        log(f"rnnlab: timing the stock and compiled paths for {key.shape()} (once per "
            "machine; cached)")
    timing = measurer.measure(PATHS)
    if "compiled" not in timing.ms_per_step:  # it failed to compile: nothing worth keeping
        return Choice("stock", "compile failed", timing.ms_per_step, precision=precision)
    cache.put(key, timing)
    path = pick(timing, train_steps, 0.0)  # compiled already: nothing left to repay
    if log is not None:
        times = ", ".join(f"{p} {ms:.1f} ms" for p, ms in timing.ms_per_step.items())
        log(f"rnnlab: a training step of the layer in {precision} takes {times}: {path} is "
            "the faster")
    return Choice(path, "measured", timing.ms_per_step, timing.compile_seconds,
                  precision=precision)
