"""Hyperparameter search on Optuna: ``rnnlab sweep TASK`` and ``rnnlab sweep status``.

A sweep is an Optuna study in a storage that many worker processes share: by default a
journal file in the output folder (one machine, or several on a shared folder), or a
PostgreSQL server (``postgresql://...``) for many machines. Every trial is an ordinary
run folder, ``OUT/trials/trial-NNNN/``, whose ``trial.json`` names the study, the trial
number, its parameters and how it ended (complete, pruned, failed).

Workers share the trial budget: a worker claims a trial under a lock that every worker
of the study takes (a file lock beside the journal; a PostgreSQL advisory lock), so the
study never holds more finished or running trials than asked for, and no trial is
trained twice. A worker killed mid-trial leaves its trial running in the storage; the
next worker to take the lock marks it failed (journal: its trial lock is free; PostgreSQL:
Optuna's heartbeat went stale) and a new trial takes its place in the budget.

Optuna is an optional extra (``rnnlab[sweep]``); it is imported when a sweep starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import multiprocessing
import os
import re
import socket
import time
import tomllib
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rnnlab.core.errors import ConfigError, RunFolderError, UserError, check, check_choice
from rnnlab.core.fileio import atomic_write_json
from rnnlab.core.settings import Setting
from rnnlab.core.threads import configure_threads
from rnnlab.study.jobs import die_with_parent
from rnnlab.tasks.base import Task
from rnnlab.tasks.registry import REGISTRY
from rnnlab.tasks.workflow import RunOptions, make_plans, train_run, train_settings

if TYPE_CHECKING:
    import optuna

SPEC_KINDS = ("log", "float", "int", "choice")
METRICS = ("valid_accuracy", "valid_loss")  # per-epoch validation metrics a trial reports
PRUNERS = ("median", "hyperband", "none")
JOURNAL_NAME = "optuna-journal.log"  # the default storage, inside the output folder
SWEEP_FILE = "sweep.json"  # the output folder's record: task, study, storage
TRIAL_FILE = "trial.json"  # in each trial's run folder
POLL_SECONDS = 1.0  # how often a waiting worker or the supervisor looks at the study again
HEARTBEAT_SECONDS = 5  # PostgreSQL: a running trial's heartbeat ...
GRACE_SECONDS = 20  # ... and how long it may be silent before the trial counts as dead
CONNECT_TIMEOUT_SECONDS = 5  # an unreachable server is refused in seconds, not minutes
TABLE_RACE_TRIES = 3  # processes meeting an empty database race to create Optuna's tables


def load_optuna():
    """The optuna module, or a UserError saying how to install it."""
    try:
        import optuna  # lazy: optuna is the optional sweep extra
    except ModuleNotFoundError:
        raise UserError("sweeps need Optuna, the optional sweep extra: "
                        "pip install 'rnnlab[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # rnnlab says what happens itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# -- the search space -----------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched setting: ``log:LOW:HIGH`` (a log scale, LOW > 0), ``float:LOW:HIGH``,
    ``int:LOW:HIGH`` or ``choice:A,B,C`` (choices typed as the setting is)."""

    name: str  # the setting's keyword (``lr``, ``batch_size``)
    spec: str  # as the user wrote it, kept in the study to check joining workers
    kind: str  # one of SPEC_KINDS
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()
    integer: bool = False  # an int setting: log:LOW:HIGH draws ints on a log scale

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     log=self.kind == "log")
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")


def searchable_settings(task_class: type[Task]) -> dict[str, Setting]:
    """Every train setting of the task by keyword (the output and runtime options are not)."""
    groups = train_settings(task_class)
    groups.pop("output and runtime")
    return {s.name: s for group in groups.values() for s in group}


def setting_of(task_class: type[Task], name: str) -> Setting:
    known = searchable_settings(task_class)
    if name not in known:
        raise ConfigError(name, f"is not a setting of the {task_class.name} task; "
                          f"its settings are {', '.join(known)}")
    return known[name]


def parse_value(s: Setting, text: str) -> Any:
    """``text`` as a value of setting ``s`` (``none`` for a setting whose default is None)."""
    if text.lower() == "none" and s.default is None:
        return None
    if s.kind is bool:
        check(text.lower() in ("true", "false"), s.name, f"takes true or false, got {text!r}")
        return text.lower() == "true"
    try:
        value = s.kind(text) if s.kind in (int, float) else text
    except ValueError:
        raise ConfigError(s.name, f"must be {'an' if s.kind is int else 'a'} "
                          f"{s.kind.__name__}, got {text!r}") from None
    if s.choices:
        check_choice(s.name, value, s.choices)
    return value


def parse_bound(s: Setting, text: str, kind: str) -> float:
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ConfigError(s.name, f"{kind} bound {text!r} is not a number") from None
    check(math.isfinite(value), s.name, f"bound {text!r} is not finite")
    return value


def parse_param(task_class: type[Task], name: str, spec: str) -> Param:
    """One ``NAME=SPEC`` of the search space, checked against the task's setting."""
    s = setting_of(task_class, name)
    kind, _, rest = spec.partition(":")
    if kind not in SPEC_KINDS:
        raise ConfigError(name, f"spec {spec!r} must start with one of {', '.join(SPEC_KINDS)}"
                          " (log:1e-4:1e-2, float:0:0.5, int:8:64, choice:a,b)")
    if kind == "choice":
        texts = [t.strip() for t in rest.split(",")] if rest.strip() else []
        check(bool(texts) and all(texts), name, f"spec {spec!r} lists an empty choice")
        values = tuple(parse_value(s, t) for t in texts)
        check(len(set(values)) == len(values), name, f"spec {spec!r} lists a choice twice")
        return Param(name, spec, kind, choices=values)
    allowed = {int: ("int", "log"), float: ("float", "log")}.get(s.kind, ())
    if kind not in allowed:
        ways = " or ".join(f"{k}:LOW:HIGH" for k in allowed) or "choice:A,B"
        raise ConfigError(name, f"is {'an' if s.kind is int else 'a'} "
                          f"{getattr(s.kind, '__name__', s.kind)} setting: search it with {ways}")
    bounds = rest.split(":")
    check(len(bounds) == 2, name, f"spec {spec!r} needs {kind}:LOW:HIGH")
    low, high = (parse_bound(s, b, "int" if s.kind is int else kind) for b in bounds)
    check(low < high, name, f"spec {spec!r} needs LOW < HIGH")
    check(kind != "log" or low > 0, name, f"spec {spec!r}: a log scale needs LOW > 0")
    return Param(name, spec, kind, low, high, integer=s.kind is int)


def split_assignment(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(what, f"takes NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def read_space_file(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """A TOML search space: ``[params]`` (NAME = "SPEC") and ``[set]`` (fixed settings)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("space", f"file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("space", f"file {path} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - {"params", "set"})
    check(not unknown, "space", f"file {path} has a table [{unknown[0] if unknown else ''}]; "
          "it may hold [params] and [set]")
    params = {k: str(v) for k, v in data.get("params", {}).items()}
    fixed = {k: str(v).lower() if isinstance(v, bool) else str(v)
             for k, v in data.get("set", {}).items()}
    return params, fixed


def search_space(task_class: type[Task], specs: dict[str, str]) -> tuple[Param, ...]:
    check(bool(specs), "param", "is needed: give at least one setting to search")
    return tuple(parse_param(task_class, name, spec) for name, spec in specs.items())


def fixed_settings(task_class: type[Task], texts: dict[str, str]) -> dict[str, Any]:
    """Settings every trial shares (``NAME=VALUE``), typed as the task's settings are."""
    return {name: parse_value(setting_of(task_class, name), text) for name, text in texts.items()}


# -- storage ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StorageSpec:
    """Where a study lives: a journal file, or a PostgreSQL URL."""

    journal: Path | None = None
    url: str | None = None

    @property
    def shown(self) -> str:
        """The storage as it may be printed and recorded: a URL's password is masked."""
        return str(self.journal) if self.journal is not None else mask_password(self.url or "")


def mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def storage_spec(storage: str | None, out: str | Path) -> StorageSpec:
    """``None``: the journal file in ``out``; ``postgresql://...``; else a journal file path."""
    if storage is None:
        return StorageSpec(journal=Path(out).resolve() / JOURNAL_NAME)
    scheme = storage.partition("://")[0] if "://" in storage else ""
    if scheme in ("postgresql", "postgresql+psycopg2"):
        return StorageSpec(url=storage)
    check(not scheme, "storage", f"{mask_password(storage)} is not a storage rnnlab uses: give "
          "a postgresql://USER@HOST:PORT/DATABASE URL or a journal file path")
    return StorageSpec(journal=Path(storage).resolve())


def open_storage(spec: StorageSpec):
    """The Optuna storage; an unreachable server or a bad URL is a ConfigError."""
    optuna = load_optuna()
    if spec.journal is not None:
        spec.journal.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(spec.journal))
        return optuna.storages.JournalStorage(backend)
    # the extra installs psycopg2; SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
    url = re.sub(r"^postgresql://", "postgresql+psycopg2://", spec.url or "")
    for attempt in range(1, TABLE_RACE_TRIES + 1):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                engine_kwargs={"connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}})
        except Exception as err:  # the driver and SQLAlchemy raise many kinds: "cannot use"
            if attempt < TABLE_RACE_TRIES and lost_table_race(err):
                time.sleep(POLL_SECONDS)
                continue
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            if isinstance(err, ImportError):
                reason += " (psycopg2 comes with the sweep extra: pip install 'rnnlab[sweep]')"
            raise ConfigError("storage", f"{spec.shown} cannot be used: {reason}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def lost_table_race(err: Exception) -> bool:
    """Whether another process created Optuna's tables in the same moment as this one."""
    from sqlalchemy import exc  # lazy: SQLAlchemy comes with the optional sweep extra

    return isinstance(err, exc.IntegrityError | exc.ProgrammingError)


class BudgetLock:
    """The lock every worker of a study takes to count the budget and claim a trial: a file
    lock beside the journal, or a PostgreSQL advisory lock. Both die with their process."""

    def __init__(self, storage, spec: StorageSpec, study_name: str):
        self.storage, self.spec, self.study_name = storage, spec, study_name
        self.held: Any = None

    def acquire(self) -> None:
        if self.spec.journal is not None:
            # not JOURNAL.lock: that is the journal backend's own lock
            path = self.spec.journal.with_name(self.spec.journal.name + ".budget-lock")
            handle = open(path, "a")  # noqa: SIM115  (held until release)
            fcntl.flock(handle, fcntl.LOCK_EX)
            self.held = handle
            return
        from sqlalchemy import text  # lazy: SQLAlchemy comes with the optional sweep extra

        connection = self.storage.engine.connect()
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key()})
        self.held = connection

    def key(self) -> int:
        return zlib.crc32(f"rnnlab-sweep:{self.study_name}".encode())

    def release(self) -> None:
        """Idempotent: the objective releases the lock once its trial is claimed."""
        held, self.held = self.held, None
        if held is None:
            return
        if self.spec.journal is None:
            from sqlalchemy import text  # lazy: SQLAlchemy comes with the optional sweep extra

            held.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key()})
        held.close()  # closing the file (or the connection) drops the lock


def claim_path(spec: StorageSpec, trial_id: int) -> Path:
    """The file a journal worker keeps locked while it trains a trial."""
    assert spec.journal is not None
    return spec.journal.parent / ".running" / f"trial-id-{trial_id}.lock"


def claimed(path: Path) -> bool:
    """Whether a live process holds the trial lock at ``path``."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def fail_dead_trials(study: optuna.Study, spec: StorageSpec) -> list[int]:
    """Mark failed the running trials whose worker died; call with the budget lock held.
    Returns their numbers; their run folders, where this machine sees them, say so too."""
    optuna = load_optuna()
    running = {t._trial_id: t for t in study.get_trials(deepcopy=False)
               if t.state == optuna.trial.TrialState.RUNNING}
    if spec.journal is None:
        optuna.storages.fail_stale_trials(study)
        dead = [t for t in study.get_trials(deepcopy=False) if t._trial_id in running
                and t.state == optuna.trial.TrialState.FAIL]
    else:
        dead = [t for i, t in running.items() if not claimed(claim_path(spec, i))]
        for trial in dead:
            study._storage.set_trial_state_values(trial._trial_id,
                                                  optuna.trial.TrialState.FAIL)
    for trial in dead:
        folder = Path(trial.user_attrs.get("run_folder", ""))
        if (folder / TRIAL_FILE).is_file():
            update_trial_record(folder, state="failed", reason="its worker stopped mid-trial")
    return [t.number for t in dead]


# -- the study --------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepOptions:
    """One ``rnnlab sweep``: what to search, where the study lives, how many workers."""

    task: str
    params: tuple[Param, ...]
    trials: int = 20
    fixed: dict[str, Any] = field(default_factory=dict)  # settings every trial shares
    study: str = "sweep"
    storage: str | None = None  # None: a journal file in ``out``
    workers: int = 1
    pruner: str = "median"
    metric: str = "valid_accuracy"
    out: str = "sweeps/sweep"
    seed: int | None = None  # the sampler's; the training seed is the ``seed`` setting
    figures: bool = True
    data_dir: str | None = None

    @property
    def direction(self) -> str:
        return "maximize" if self.metric.endswith("accuracy") else "minimize"

    def definition(self) -> dict:
        """What every worker of the study must agree on (kept in the study)."""
        return {"task": self.task, "metric": self.metric,
                "space": {p.name: p.spec for p in self.params},
                "fixed": {k: repr(v) for k, v in sorted(self.fixed.items())}}


def check_options(options: SweepOptions) -> type[Task]:
    """The task class; every option and the space's corner settings checked, nothing written."""
    task_class = REGISTRY.get(options.task)
    check(options.trials >= 1, "trials", f"must be >= 1, got {options.trials}")
    check(options.workers >= 1, "workers", f"must be >= 1, got {options.workers}")
    check_choice("pruner", options.pruner, PRUNERS)
    check_choice("metric", options.metric, METRICS)
    searched = {p.name for p in options.params}
    both = sorted(searched & set(options.fixed))
    check(not both, both[0] if both else "", "is both searched and set")
    check(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", options.study)), "study",
          f"name {options.study!r} may hold letters, digits, '_', '.' and '-' only")
    for corner in ("low", "high"):  # settings out of range are refused before any work
        values = {**options.fixed, **{p.name: corner_value(p, corner) for p in options.params}}
        make_plans(task_class, values, RunOptions(out=options.out, quiet=True))
    return task_class


def corner_value(param: Param, corner: str) -> Any:
    if param.kind == "choice":
        return param.choices[0 if corner == "low" else -1]
    value = param.low if corner == "low" else param.high
    return int(value) if param.integer else float(value)


def make_sampler(optuna, options: SweepOptions, worker: int):
    # TPE after a few random trials (a third of the budget, 2 to 10); constant_liar keeps
    # parallel workers from proposing the same point while their trials run
    seed = None if options.seed is None else options.seed + worker
    startup = max(2, min(10, options.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def make_pruner(optuna, name: str):
    if name == "median":  # no pruning before 2 trials finished or before epoch 2
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto")
    return optuna.pruners.NopPruner()


def prepare_study(storage, options: SweepOptions):
    """Create the study, or join it when its task, metric and space are this sweep's."""
    optuna = load_optuna()
    study = optuna.create_study(study_name=options.study, storage=storage,
                                direction=options.direction, load_if_exists=True)
    wanted = options.definition()
    if not study.user_attrs.get("definition"):
        study.set_user_attr("definition", wanted)
    elif study.user_attrs["definition"] != wanted:
        theirs = study.user_attrs["definition"]
        differs = next(k for k in wanted if wanted[k] != theirs.get(k))
        raise ConfigError("study", f"{options.study} already searches another {differs} "
                          f"({theirs.get(differs)}); join it with the same one, or name "
                          "another study")
    return study


def write_sweep_file(options: SweepOptions, spec: StorageSpec) -> None:
    """``OUT/sweep.json``: the task, study and storage (password masked) this folder holds,
    and what it searches (metric, direction, each parameter's spec) for the report."""
    out = Path(options.out)
    path = out / SWEEP_FILE
    mine = {"task": options.task, "study": options.study, "storage": spec.shown,
            "default_storage": options.storage is None, "metric": options.metric,
            "direction": options.direction, "space": {p.name: p.spec for p in options.params}}
    existing = read_json(path)
    if existing is not None and (existing["study"], existing["storage"]) != (
            mine["study"], mine["storage"]):
        raise RunFolderError(f"{out} holds study {existing['study']} in {existing['storage']}; "
                             "use another output folder for another study")
    atomic_write_json(path, mine)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise RunFolderError(f"{path} is not valid JSON: {err}") from None


# -- one trial --------------------------------------------------------------------------
def trial_folder(options: SweepOptions, number: int) -> Path:
    return Path(options.out) / "trials" / f"trial-{number:04d}"


def update_trial_record(folder: Path, **changes: Any) -> None:
    record = read_json(folder / TRIAL_FILE) or {}
    atomic_write_json(folder / TRIAL_FILE, {**record, **changes})


def best_of(rows: list[dict], metric: str, direction: str) -> float:
    values = [float(row[metric]) for row in rows]
    return max(values) if direction == "maximize" else min(values)


def objective(trial: optuna.Trial, options: SweepOptions, task_class: type[Task],
              lock: BudgetLock) -> float:
    """Train the trial's run in ``OUT/trials/trial-NNNN``; its validation metric per epoch
    goes to the pruner, its best one is the trial's value."""
    optuna = load_optuna()
    folder = trial_folder(options, trial.number)
    with trial_claim(lock.spec, trial._trial_id), contextlib.ExitStack() as relock:
        trial.set_user_attr("run_folder", str(folder.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        update_trial_record(folder, study=options.study, trial=trial.number, task=options.task,
                            fixed=options.fixed, metric=options.metric, state="running")
        lock.release()  # claimed and recorded: other workers may count the budget again
        # and take it back before the claim ends: Optuna records the trial's state only after
        # this returns, and a worker counting the budget in between saw the trial running and
        # unclaimed, and failed it (work() releases the lock once the state is recorded)
        relock.callback(lock.acquire)
        values = {**options.fixed, **{p.name: p.suggest(trial) for p in options.params}}
        update_trial_record(folder, params={p.name: values[p.name] for p in options.params})
        plan = make_plans(task_class, values, RunOptions(out=str(folder), force=True,
                                                         quiet=True))[0]
        rows: list[dict] = []

        def on_epoch(row: dict) -> None:
            rows.append(row)
            trial.report(float(row[options.metric]), row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

        try:
            summary = train_run(plan, data_dir=options.data_dir, figures=options.figures,
                                on_epoch=on_epoch)
        except optuna.TrialPruned:
            value = best_of(rows, options.metric, options.direction)
            update_trial_record(folder, state="pruned", epochs=len(rows), value=value)
            raise
        except BaseException as err:
            update_trial_record(folder, state="failed", reason=f"{type(err).__name__}: {err}")
            raise
        value = best_of(rows, options.metric, options.direction)
        test_accuracy = float(summary["test"]["accuracy"])
        trial.set_user_attr("test_accuracy", test_accuracy)
        update_trial_record(folder, state="complete", epochs=len(rows), value=value,
                            test_accuracy=test_accuracy)
        return value


class trial_claim:
    """Journal storage: keep the trial's lock file locked while it trains (a kill frees it)."""

    def __init__(self, spec: StorageSpec, trial_id: int):
        self.path = claim_path(spec, trial_id) if spec.journal is not None else None
        self.fd: int | None = None

    def __enter__(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # type: ignore[union-attr]
            os.close(self.fd)


# -- workers ----------------------------------------------------------------------------
def counts(study: optuna.Study) -> tuple[int, int]:
    """(finished trials that use the budget: complete or pruned, trials running now)."""
    optuna = load_optuna()
    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (state.COMPLETE, state.PRUNED) for t in trials)
    return done, sum(t.state == state.RUNNING for t in trials)


def work(options: SweepOptions, worker: int) -> None:
    """Train trials of the study until ``options.trials`` are complete or pruned."""
    optuna = load_optuna()
    task_class = REGISTRY.get(options.task)
    spec = storage_spec(options.storage, options.out)
    storage = open_storage(spec)
    study = optuna.load_study(study_name=options.study, storage=storage,
                              sampler=make_sampler(optuna, options, worker),
                              pruner=make_pruner(optuna, options.pruner))
    lock = BudgetLock(storage, spec, options.study)
    while True:
        lock.acquire()
        try:
            fail_dead_trials(study, spec)
            done, running = counts(study)
            if done >= options.trials:
                return
            wait = done + running >= options.trials  # a running trial may yet fail
            if not wait:
                study.optimize(lambda t: objective(t, options, task_class, lock), n_trials=1,
                               catch=())
        finally:
            lock.release()
        if wait:
            time.sleep(POLL_SECONDS)


def worker_main(options: SweepOptions, worker: int, task_class: type[Task], parent: int,
                errors) -> None:
    """A spawned worker process: one torch thread; dies with the command that started it;
    a UserError goes back to the parent as (setting or None, message)."""
    die_with_parent(parent)
    if task_class.name not in REGISTRY.names():
        REGISTRY.register(task_class)
    configure_threads(1)
    try:
        work(options, worker)
    except ConfigError as err:
        errors.put((err.setting, err.problem))
        raise SystemExit(2) from None
    except UserError as err:
        errors.put((None, str(err)))
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def start_workers(options: SweepOptions, task_class: type[Task]) -> tuple[list, Any]:
    # spawn: no forked torch thread pools; each worker is one thread (configure_threads(1))
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    workers = [context.Process(target=worker_main, name=f"rnnlab-sweep-worker-{i}",
                               args=(options, i, task_class, os.getpid(), errors))
               for i in range(options.workers)]
    for worker in workers:
        worker.start()
    return workers, errors


def raise_worker_error(errors, wait: float = 0.0) -> None:
    """Re-raise, in this process, the first UserError a worker sent back."""
    try:
        setting, message = errors.get(timeout=wait) if wait else errors.get_nowait()
    except Exception:  # queue.Empty: no worker failed
        return
    raise ConfigError(setting, message) if setting is not None else UserError(message)


def supervise(options: SweepOptions, task_class: type[Task], study: optuna.Study,
              on_trial: Callable[[TrialRow], None] | None) -> int:
    """Start the workers, pass on each trial as it finishes, wait for them; returns how many
    workers stopped early (killed: the others go on, and the budget with them)."""
    seen = {row.number for row in trial_rows(study) if row.state != "running"}
    workers, errors = start_workers(options, task_class)
    try:
        while any(w.is_alive() for w in workers):
            report_finished(study, seen, on_trial)
            raise_worker_error(errors)
            time.sleep(POLL_SECONDS)
        raise_worker_error(errors, wait=POLL_SECONDS)
        report_finished(study, seen, on_trial)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # its trial's lock dies with it; the next worker fails it
            worker.join()
    return sum(w.exitcode != 0 for w in workers)


def report_finished(study: optuna.Study, seen: set[int],
                    on_trial: Callable[[TrialRow], None] | None) -> None:
    for row in trial_rows(study):
        if row.state != "running" and row.number not in seen:
            seen.add(row.number)
            if on_trial is not None:
                on_trial(row)


@dataclass(frozen=True)
class SweepResult:
    status: SweepStatus
    seconds: float  # wall time of this command
    stopped_workers: int  # workers that stopped before the budget was reached (killed)


def run_sweep(options: SweepOptions,
              on_trial: Callable[[TrialRow], None] | None = None) -> SweepResult:
    """Search until the study holds ``options.trials`` complete or pruned trials, with
    ``options.workers`` local worker processes; ``on_trial`` receives each finished trial.
    Options, space and storage are checked before any worker starts."""
    task_class = check_options(options)
    spec = storage_spec(options.storage, options.out)
    storage = open_storage(spec)
    study = prepare_study(storage, options)
    write_sweep_file(options, spec)
    started = time.perf_counter()
    stopped = supervise(options, task_class, study, on_trial)
    return SweepResult(status_of(study, spec), time.perf_counter() - started, stopped)


# -- status -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # complete, pruned, failed, running, waiting
    value: float | None
    params: dict[str, Any]
    run_folder: str | None
    test_accuracy: float | None
    seconds: float | None


@dataclass(frozen=True)
class SweepStatus:
    study: str
    storage: str  # password masked
    task: str | None
    metric: str | None
    direction: str
    states: dict[str, int]  # trials by state
    trials: list[TrialRow]
    best: TrialRow | None  # the best complete trial

    def to_json(self) -> dict:
        return asdict(self)


STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed",
               "RUNNING": "running", "WAITING": "waiting"}


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        value = t.value if t.state.name == "COMPLETE" else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        rows.append(TrialRow(t.number, STATE_NAMES[t.state.name], value, dict(t.params),
                             t.user_attrs.get("run_folder"), t.user_attrs.get("test_accuracy"),
                             seconds))
    return rows


def status_of(study: optuna.Study, spec: StorageSpec) -> SweepStatus:
    rows = trial_rows(study)
    definition = study.user_attrs.get("definition", {})
    direction = study.direction.name.lower()
    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    pick = max if direction == "maximize" else min
    best = pick(complete, key=lambda r: (r.value, -r.number)) if complete else None
    states = {name: sum(r.state == name for r in rows) for name in STATE_NAMES.values()}
    return SweepStatus(study.study_name, spec.shown, definition.get("task"),
                       definition.get("metric"), direction, states, rows, best)


def sweep_status(out: str | Path | None = None, storage: str | None = None,
                 study: str | None = None) -> SweepStatus:
    """The study of sweep folder ``out`` (its ``sweep.json`` names study and storage), or the
    study named ``study`` in ``storage``; trials whose worker died are marked failed first."""
    record = read_json(Path(out) / SWEEP_FILE) if out is not None else None
    if out is not None and record is None and storage is None:
        raise RunFolderError(f"{out} is not a sweep folder (no {SWEEP_FILE})")
    name = study or (record or {}).get("study")
    check(name is not None, "study", "is needed to find a study in a storage")
    if storage is None and record is not None and not record.get("default_storage"):
        storage = record["storage"]
    check(storage is not None or out is not None, "storage", "or a sweep folder is needed")
    spec = storage_spec(storage, out if out is not None else ".")
    if spec.journal is not None and not spec.journal.is_file():
        raise RunFolderError(f"{spec.journal} does not exist: no sweep has run there")
    optuna = load_optuna()
    opened = open_storage(spec)
    try:
        found = optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        raise ConfigError("study", f"{name} is not in {spec.shown}") from None
    lock = BudgetLock(opened, spec, name)
    lock.acquire()
    try:
        fail_dead_trials(found, spec)
    finally:
        lock.release()
    return status_of(found, spec)


def check_sweep(options: SweepOptions) -> StorageSpec:
    """Everything ``run_sweep`` checks before it starts, writing nothing (a PostgreSQL
    storage is connected to, which creates Optuna's tables there)."""
    check_options(options)
    spec = storage_spec(options.storage, options.out)
    if spec.url is not None:
        open_storage(spec)
    return spec
