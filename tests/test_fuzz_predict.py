"""Fuzz ``rnnlab predict``: whatever the inputs, a result or one error line (exit 2).

Digit sequences for a recall run, bit strings for an addition run, and image
files (random bytes, damaged PNGs) for an MNIST run, all through
``rnnlab.cli.main`` as a user would call it. RNNLAB_FUZZ_EXAMPLES sets the number
of examples (default 100 here; hypothesis' deadline catches a hang).
"""

from __future__ import annotations

import io
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rnnlab.cli import main

EXAMPLES = int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), derandomize=EXAMPLES <= 300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
QUIET = ["--dry-run", "--threads", "1", "--quiet", "--no-figures"]


@pytest.fixture(scope="module")
def recall_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recall") / "run"
    assert main(["train", "recall", "--hidden", "3", "--out", str(out), *QUIET]) == 0
    return out / "hidden-3"


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("addition") / "run"
    assert main(["train", "addition", "--hidden", "3", "--out", str(out), *QUIET]) == 0
    return out


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, fake_mnist_root) -> Path:
    out = tmp_path_factory.mktemp("mnist") / "run"
    assert main(["train", "mnist", "--hidden", "4", "--batch-size", "500",
                 "--data-dir", str(fake_mnist_root), "--out", str(out), *QUIET]) == 0
    return out


def predict(run: Path, inputs: list[str], capsys, *options: str) -> tuple[int, str, str]:
    """``rnnlab predict RUN [OPTIONS] -- INPUTS``: the exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        code = main(["predict", str(run), *options, "--", *inputs])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_result_or_one_error(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err
    if code == 0:
        assert out.strip(), "exit 0 but nothing printed"
        assert all(line.startswith("rnnlab: note: ") for line in err.splitlines()), err
    else:
        assert code == 2, (code, err)
        errors = [line for line in err.splitlines() if not line.startswith("rnnlab: note: ")]
        assert len(errors) == 1 and errors[0].startswith("rnnlab: error: "), err


TOKENS = st.one_of(st.sampled_from(list("0123456789")), st.integers(-30, 30).map(str),
                   st.text(max_size=8),
                   st.sampled_from(["", " ", ",", "3,1,4", "1 2 3", "٣", "0x1", "1e3"]))


@FUZZ
@given(tokens=st.lists(TOKENS, min_size=1, max_size=14))
def test_recall_digits(recall_run, capsys, tokens):
    code, out, err = predict(recall_run, tokens, capsys)
    assert_result_or_one_error(code, out, err)
    if code == 0:
        assert out.strip() in set("0123456789")


def test_recall_digits_known_answers(recall_run, capsys):
    assert predict(recall_run, ["3", "1", "4"], capsys)[0] == 0
    for bad, message in [(["3", "x", "4"], "'x' is not a digit"),
                         (["12", "3"], "digit 12 is outside 0..9"),
                         (["3"], "this run recalls position K=1"),
                         ([" "], "empty sequence")]:
        code, _, err = predict(recall_run, bad, capsys)
        assert code == 2 and message in err and len(err.splitlines()) == 1


BITS = st.one_of(st.text(alphabet="01", min_size=0, max_size=70), st.text(max_size=10),
                 st.sampled_from(["0b101", "1 0", "١٠", "-1", "+1", "1" * 20_000]))


@FUZZ
@given(operands=st.lists(BITS, min_size=1, max_size=3))
def test_addition_bit_strings(addition_run, capsys, operands):
    code, out, err = predict(addition_run, operands, capsys, "--json")
    assert_result_or_one_error(code, out, err)
    if code == 0:
        assert len(operands) == 2 and all(set(o) <= {"0", "1"} and o for o in operands)


def test_addition_known_answers(addition_run, capsys):
    assert predict(addition_run, ["1011", "0110"], capsys)[0] == 0
    for bad, message in [(["102", "1"], "is not binary"), (["1"], "exactly two binary numbers"),
                         (["", "1"], "number 1 is empty")]:
        code, _, err = predict(addition_run, bad, capsys)
        assert code == 2 and message in err and len(err.splitlines()) == 1


def png_bytes(seed: int = 0) -> bytes:
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:22, 12:16] = 255  # a "1"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(data=st.binary(max_size=3000),
       suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif"]))
def test_random_bytes_as_an_image(mnist_run, tmp_path, capsys, data, suffix):
    path = tmp_path / f"digit{suffix}"
    path.write_bytes(data)
    code, out, err = predict(mnist_run, [str(path)], capsys)
    assert code == 2 and str(path) in err
    assert_result_or_one_error(code, out, err)


@FUZZ
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.floats(0.05, 1.0))
def test_damaged_png(mnist_run, tmp_path, capsys, edits, cut):
    data = bytearray(png_bytes())
    for where, value in edits:
        data[int(where * len(data))] = value
    path = tmp_path / "digit.png"
    path.write_bytes(bytes(data[: max(1, int(cut * len(data)))]))
    assert_result_or_one_error(*predict(mnist_run, [str(path)], capsys))


def test_the_intact_png_predicts(mnist_run, tmp_path, capsys):
    path = tmp_path / "digit.png"
    path.write_bytes(png_bytes())
    code, out, err = predict(mnist_run, [str(path)], capsys)
    assert code == 0 and out.strip() and not err
