"""The command line answers help and argument errors without importing torch, numpy or
matplotlib: its parsers come from ``src/rnnlab/cli/parsers.json``, which must equal
what the live configs and registries generate (``make cli-parsers`` rewrites it).

Speed is measured by hand (wall times in the lead's notes); these tests assert on
what gets imported, which does not depend on the machine's load."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from rnnlab import cli
from rnnlab.cli import build_parser, main
from rnnlab.cli.description import (
    DESCRIPTION_PATH,
    REGENERATE,
    Deferred,
    DescriptionError,
    describe,
    load_deferred,
    parser_from,
    read_description,
)
from rnnlab.cli.live import live_parser
from rnnlab.cli.parsing import HelpFormatter, OneLineErrorParser
from rnnlab.cli.train import run_train
from rnnlab.tasks.recall import RecallTask
from rnnlab.tasks.registry import REGISTRY

HEAVY = ("torch", "numpy", "matplotlib")

# Runs rnnlab.cli.main on each argv given as a JSON list, in one fresh interpreter, and
# prints, for each, its exit code and the heavy modules loaded so far.
RUN_EACH = f"""
import json, sys
from rnnlab.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    heavy = [m for m in {HEAVY!r} if m in sys.modules]
    sys.__stderr__.write("RESULT " + json.dumps([argv, code, heavy]) + "\\n")
"""


def run_each(argvs: list[list[str]]) -> tuple[list[tuple[list[str], int, list[str]]], str]:
    """(argv, exit code, heavy modules loaded by then) for each argv, and stdout."""
    done = subprocess.run([sys.executable, "-c", RUN_EACH, json.dumps(argvs)],
                          capture_output=True, text=True, timeout=120)
    results = [tuple(json.loads(line.removeprefix("RESULT ")))
               for line in done.stderr.splitlines() if line.startswith("RESULT ")]
    assert len(results) == len(argvs), done.stderr
    return results, done.stdout


def command_paths(described: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every parser's command path in a description: (), ("data",), ("data", "fetch"), ..."""
    found = [path]
    for action in described["actions"]:
        for command in action.get("commands", ()):
            found += command_paths(command["parser"], (*path, command["name"]))
    return found


def parsers_by_path(parser: argparse.ArgumentParser,
                    path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found |= parsers_by_path(child, (*path, name))
    return found


@pytest.fixture(scope="module")
def description() -> dict:
    return read_description()


# -- nothing heavy is imported -----------------------------------------------------------
def test_every_help_imports_no_torch_numpy_or_matplotlib(description):
    paths = command_paths(description["parser"])
    assert ("train", "mnist") in paths and ("sweep", "status") in paths and ("serve",) in paths
    results, stdout = run_each([[*path, "--help"] for path in paths])
    for argv, code, heavy in results:
        assert code == 0, argv
        assert not heavy, f"rnnlab {' '.join(argv)} imported {', '.join(heavy)}"
    assert stdout.count("usage: rnnlab") == len(paths)
    assert "--lr LR" in stdout and "--cell {" in stdout


@pytest.mark.parametrize("argv", [
    ["train", "mnist", "--lr", "x"],
    ["train", "mnist", "--cell", "nope"],
    ["train", "no-such-task"],
    ["sweep", "mnist", "--trials", "many"],
    ["predict"],
    ["data", "fetch", "--dataset", "cifar"],
    [],
])
def test_argument_errors_are_one_line_without_torch(argv):
    done = subprocess.run([sys.executable, "-c", RUN_EACH, json.dumps([argv])],
                          capture_output=True, text=True, timeout=60)
    error, result = done.stderr.splitlines()
    _, code, heavy = json.loads(result.removeprefix("RESULT "))
    assert (code, heavy) == (2, [])
    assert error.startswith("rnnlab") and ": error: " in error and error.endswith("(see --help)")


def test_version_and_python_dash_m_import_no_torch():
    """``python -m rnnlab`` (the package's __main__) imports the same little."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "rnnlab", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("rnnlab ")
    imported = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "rnnlab.cli.description" in imported  # the check sees real imports
    assert not {name.partition(".")[0] for name in imported} & set(HEAVY)


def test_the_package_loads_its_api_on_first_use():
    """``import rnnlab`` (which the command line does) imports no torch; ``rnnlab.tasks``
    stays the API's function even when the subpackage of that name is imported first."""
    script = (f"import sys, rnnlab; print(sorted(m for m in {HEAVY!r} if m in sys.modules)); "
              "import rnnlab.tasks.registry, rnnlab.api; "
              "print(rnnlab.tasks is rnnlab.api.tasks, rnnlab.tasks()[0])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.splitlines() == ["[]", "True mnist"], done.stderr


# -- the description equals the live parsers -------------------------------------------
def test_the_committed_description_is_what_the_live_code_generates(description):
    current = describe(live_parser())
    assert current == description, (
        f"{DESCRIPTION_PATH.name} is out of date with the settings, tasks, cells or command "
        f"options: run `{REGENERATE}` and commit the file")


def test_the_description_round_trips(description):
    assert describe(parser_from(description)) == description


def test_described_parsers_print_the_live_help(description):
    live, described = parsers_by_path(live_parser()), parsers_by_path(parser_from(description))
    assert live.keys() == described.keys()
    for path, parser in live.items():
        assert described[path].format_help() == parser.format_help(), path


@pytest.mark.parametrize("argv", [
    ["train", "mnist", "--cell", "gru", "--lr", "0.01", "--epochs", "2", "--dry-run"],
    ["train", "recall", "--hidden", "8", "16"],
    ["sweep", "mnist", "--param", "lr=log:1e-4:1e-2", "--set", "epochs=1", "--trials", "3"],
    ["sweep", "status", "out", "--json"],
    ["reproduce", "--no-ablations", "--tasks", "mnist", "recall", "--jobs", "2"],
    ["data", "info", "--data-dir", "somewhere"],
    ["predict", "run", "3", "1", "--top", "2"],
    ["evaluate", "run", "--device", "cpu"],
    ["report", "runs", "--dry-run"],
    ["serve", "a", "b", "--port", "0"],
])
def test_described_parsers_parse_as_the_live_ones(description, argv):
    parsed = parser_from(description).parse_args(argv)
    assert isinstance(parsed.func, Deferred)  # nothing imported while parsing
    assert vars(load_deferred(parsed)) == vars(live_parser().parse_args(argv))


# -- which parsers the command line uses -----------------------------------------------
def test_a_process_that_registered_a_task_gets_it_on_the_command_line(monkeypatch):
    """The registries are loaded here, so the live parsers (and what this process
    registered) are used, not the description."""
    renamed = type("RecallAgain", (RecallTask,), {"name": "recall-again"})
    monkeypatch.setitem(REGISTRY.classes, "recall-again", renamed)
    args = build_parser().parse_args(["train", "recall-again", "--epochs", "1"])
    assert args.task_class is renamed and callable(args.func)


def test_main_runs_a_command_from_the_description(monkeypatch, tmp_path, capsys):
    """As in a fresh `rnnlab` (no registry loaded), main parses with the description and
    imports the command's handler only then."""
    monkeypatch.setattr(cli, "REGISTRY_MODULES", ("rnnlab.not_loaded",))
    monkeypatch.setattr(cli, "parser_from", counted := CountedCalls(parser_from))
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert counted.calls == 1
    assert "is not a folder" in capsys.readouterr().err


class CountedCalls:
    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args):
        self.calls += 1
        return self.function(*args)


# -- what the description refuses to hold -----------------------------------------------
def test_describe_refuses_a_type_it_cannot_name_without_the_library():
    parser = OneLineErrorParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--when", type=lambda text: text)
    with pytest.raises(DescriptionError, match=r"x --when: .* add it to rnnlab.cli.description"):
        describe(parser)


def test_describe_refuses_a_default_that_is_no_plain_value():
    parser = OneLineErrorParser(prog="x", formatter_class=HelpFormatter)
    parser.add_argument("--pair", default=(1, 2))
    with pytest.raises(DescriptionError, match="x --pair: the default"):
        describe(parser)
    parser = OneLineErrorParser(prog="x", formatter_class=HelpFormatter)
    parser.set_defaults(func=lambda args: 0)
    with pytest.raises(DescriptionError, match="x default func"):
        describe(parser)


def test_a_handler_is_described_by_its_import_path(description):
    mnist = parsers_by_path(parser_from(description))[("train", "mnist")]
    assert mnist.get_default("func") == Deferred("rnnlab.cli.train:run_train")
    assert mnist.get_default("func").load() is run_train
