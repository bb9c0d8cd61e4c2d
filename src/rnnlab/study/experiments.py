"""The experiment catalogue of ``rnnlab reproduce``: every registered task's experiments
for a profile, made small for ``--quick``, and the flaws they measure."""

from __future__ import annotations

from dataclasses import replace

from rnnlab.tasks.base import QUICK_EPOCHS, REFERENCE_SEED, Experiment, Flaw
from rnnlab.tasks.registry import REGISTRY

PROFILES = ("reference", "tuned")  # "all" runs these
# run only by name: the delay grid of every cell (about 1.5 hours on 2 cores), and the long-memory
# recipes (hours on a CPU)
OTHER_PROFILES = ("long-range", "long-range-recipes")


def quick_version(exp: Experiment) -> Experiment:
    """``exp`` on a tiny budget: the task's small data, two epochs (a first look, CI)."""
    task = REGISTRY.get(exp.task).from_dict(exp.task_config).shrunk(exp.train.batch_size)
    return replace(exp, train=replace(exp.train, epochs=QUICK_EPOCHS),
                   task_config=task.config_dict())


def catalogue(profile: str, quick: bool = False, seeds: int = 3, first_seed: int = REFERENCE_SEED,
              ablations: bool = True, tasks: tuple[str, ...] | None = None) -> list[Experiment]:
    """The experiments of ``profile`` ("reference", "tuned" or "all"), task by task."""
    profiles = PROFILES if profile == "all" else (profile,)
    seed_list = tuple(first_seed + i for i in range(seeds))
    found = []
    for p in profiles:
        for name in tasks or REGISTRY.names():
            for exp in REGISTRY.get(name).experiments(p, seed_list, ablations):
                found.append(quick_version(exp) if quick else exp)
    return found


def flaws_of(tasks: tuple[str, ...] | None = None) -> list[Flaw]:
    return [flaw for name in tasks or REGISTRY.names() for flaw in REGISTRY.get(name).flaws]
