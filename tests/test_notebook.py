"""examples/exercise.ipynb runs top to bottom, offline, on the fake MNIST.

The notebook is executed with nbclient in a temporary working directory, so it writes
nothing into the repository; its kernel inherits ``RNNLAB_DATA`` (set by the
``fake_mnist`` fixture before the kernel starts). Without nbclient, nbformat or
ipykernel the test is skipped, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "exercise.ipynb"
CELL_TIMEOUT = 240  # seconds per cell: generous, and inside pytest-timeout's 300 s per test


def require(module: str):
    """The module, or a skip (a failure under CI=true) naming what to install."""
    try:
        return __import__(module)
    except ImportError:
        reason = f"{module} is not installed: pip install -e '.[dev]' to run the notebook test"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def cells_by_tag(notebook) -> dict[str, dict]:
    return {tag: cell for cell in notebook.cells for tag in cell.metadata.get("tags", [])}


def printed(cell: dict) -> str:
    """Everything a code cell printed (its stream outputs)."""
    return "".join(o["text"] for o in cell["outputs"] if o["output_type"] == "stream")


def has_image(cell: dict) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell["outputs"])


def test_the_stored_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, \
            f"clear the outputs of {NOTEBOOK.name} before committing it"


def test_the_exercise_notebook_runs_offline(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # runs trained with out=None land here too
    nbformat = require("nbformat")
    nbclient = require("nbclient")
    require("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    examples_before = sorted(NOTEBOOK.parent.iterdir())
    # The kernel starts here, after fake_mnist has set RNNLAB_DATA, and inherits it.
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a failing cell raises CellExecutionError

    cells = cells_by_tag(notebook)
    assert f"data folder: {fake_mnist / 'mnist'}" in printed(cells["fetch"])
    assert re.search(r"test accuracy [\d.]+% on 10000 images", printed(cells["mnist-train"]))
    for tag in ("mnist-curves", "mnist-images", "recall-curves", "addition-by-length", "report"):
        assert has_image(cells[tag]), f"the {tag} cell drew no figure"
    assert len(re.findall(r"^LSTM hidden +\d+: test accuracy", printed(cells["recall-train"]),
                          re.MULTILINE)) == 3
    assert re.search(r"^digit at position 1 of 3 1 4 1 5: \d \(probability",
                     printed(cells["recall-predict"]), re.MULTILINE)
    assert "InputError: 'x' is not a digit" in printed(cells["recall-predict"])
    addition = printed(cells["addition-predict"])
    assert "10001  17  (true sum)" in addition and "model's sum: " in addition
    assert re.search(r"trained \d+ runs", printed(cells["reproduce"]))
    table = cells["report-table"]["outputs"][0]["data"]["text/markdown"]
    assert "| recall: LSTM hidden 10 | main | 80.00 |" in table
    report = cells["report"]["outputs"][0]["data"]["text/markdown"]
    assert report.startswith("# rnnlab: reproduction")
    assert sorted(NOTEBOOK.parent.iterdir()) == examples_before, "the notebook wrote into examples/"
