"""The explorer in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright for Python) draws a digit with mouse events, types a digit sequence and two
numbers, and checks what each inspector shows. Locally a missing browser skips these
tests with one line; under CI=true it fails them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
import uvicorn

from rnnlab.cli import main
from rnnlab.cli.serve import bind
from rnnlab.serve.app import create_app
from test_serve import train_runs

IN_CI = os.environ.get("CI", "").lower() == "true"
TIMEOUT_MS = 20_000


def browser_or_skip():
    """Playwright's Chromium on Debian's browser binary, or a skip (a failure in CI)."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright  # lazy: an optional test dependency
    except ImportError:
        missing = "playwright for Python is not installed (pip install -e '.[dev]')"
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if missing is None and executable is None:
        missing = "no chromium browser on PATH (apt-get install chromium)"
    if missing is not None:
        if IN_CI:
            pytest.fail(f"browser tests need a browser under CI: {missing}")
        pytest.skip(missing)
    return sync_playwright, executable


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_mnist_root):
    runs = train_runs(tmp_path_factory.getbasetemp() / "serve", fake_mnist_root)
    app = create_app([runs], compute_slots=2)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    ids = {Path(r.name).name: r.id for r in app.state.explorer.index.list()}
    yield url, ids, runs
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    sync_playwright, executable = browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"


def inspected(page, times: int) -> None:
    page.wait_for_selector(f"body[data-inspected='{times}']")


def until(condition, what: str) -> None:
    """Poll ``condition()`` from Python: the page's CSP forbids the eval that
    ``wait_for_function`` uses, and the tests should see the page as users get it."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def rows(page, selector: str) -> int:
    return page.locator(selector).count()


def heatmap_rows(page, kind: str) -> list[int]:
    return [int(r) for r in page.eval_on_selector_all(
        f"canvas.heatmap[data-kind='{kind}']", "els => els.map(e => e.dataset.rows)")]


def step_shown(page) -> int:
    return int(page.get_attribute("#step-label", "data-step"))


def step_back_once(page) -> None:
    page.focus("#step")
    page.keyboard.press("ArrowLeft")


def draw_a_seven(page) -> None:
    box = page.locator("#draw").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + 70, y0 + 70)
    page.mouse.down()
    for k in range(1, 11):  # the bar
        page.mouse.move(x0 + 70 + 14 * k, y0 + 70)
    page.mouse.up()
    page.mouse.move(x0 + 210, y0 + 72)
    page.mouse.down()
    for k in range(1, 13):  # the stem
        page.mouse.move(x0 + 210 - 8 * k, y0 + 72 + 14 * k)
    page.mouse.up()


def test_runs_page_lists_and_filters_runs(server, page):
    url, ids, _ = server
    page.goto(url)
    page.wait_for_selector("table#runs")
    assert rows(page, "table#runs tbody tr") == 4
    first_drawable = page.eval_on_selector("#draw-run", "s => s.options[1].value")
    assert first_drawable == ids["mnist-robust-copy"], "robust MNIST runs are offered first"
    page.click("button.chip[data-task='recall']")
    until(lambda: rows(page, "table#runs tbody tr") == 1, "the filter leaves one run")
    assert page.get_attribute("table#runs tbody tr", "data-task") == "recall"


def test_mnist_inspector_reads_a_drawing_row_by_row(server, page, tmp_path, capsys):
    url, ids, runs = server
    page.goto(f"{url}#/run/{ids['mnist-bilstm']}")
    page.wait_for_selector("canvas#draw")
    with page.expect_response(lambda r: r.url.endswith("/inspect")) as answer:
        draw_a_seven(page)
    inspected(page, 2)  # one request per stroke
    assert page.inner_text("#prediction").strip()
    assert rows(page, "table#probs tbody tr") == 28
    assert heatmap_rows(page, "hidden") == [28, 28], "both directions of the bi-LSTM"
    assert heatmap_rows(page, "gate-forget") == [28, 28]
    assert step_shown(page) == 28
    step_back_once(page)
    assert step_shown(page) == 27
    current = page.eval_on_selector_all(
        "table#probs tbody tr", "trs => trs.findIndex(t => t.classList.contains('current'))")
    assert current == 26
    page.click("#play")
    until(lambda: step_shown(page) < 27, "play steps through the rows")
    assert answer.value.status == 200

    # the same drawing through rnnlab predict: the same class and probabilities
    with page.expect_response(lambda r: r.url.endswith("/inspect")) as last:
        page.click("#undo")
        page.mouse.move(0, 0)
    response = json.loads(last.value.body())
    data_url = page.eval_on_selector("#draw", "c => c.toDataURL('image/png')")
    png = tmp_path / "drawing.png"
    png.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
    assert main(["predict", str(runs / "mnist-bilstm"), str(png), "--json", "--top", "10"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli["prediction"] == response["prediction"]["label"]
    by_class = {p["class"]: p["probability"] for p in cli["probabilities"]}
    assert [by_class[c] for c in range(10)] == pytest.approx(
        response["prediction"]["probabilities"], abs=1e-6)


def test_recall_inspector_reads_typed_digits(server, page):
    url, ids, _ = server
    page.goto(f"{url}#/run/{ids['recall-gru']}")
    inspected(page, 1)  # the example sequence is read at once
    page.fill("#digits", "3 1 4 1 5 9 2 6")
    page.click("#read")
    inspected(page, 2)
    assert page.inner_text("#prediction").strip()
    assert rows(page, "table#probs tbody tr") == 8
    assert heatmap_rows(page, "hidden") == [8]
    assert heatmap_rows(page, "gate-update") == [8] and heatmap_rows(page, "cell") == []
    marked = page.eval_on_selector_all(".token", "ts => ts.map(t => t.classList.contains('k'))")
    assert marked == [i == 1 for i in range(8)], "position K is marked"
    step_back_once(page)
    assert step_shown(page) == 7
    page.fill("#digits", "3 x")
    page.click("#read")
    page.wait_for_selector("#inspect-error:not(:empty)")
    assert "not a digit" in page.inner_text("#inspect-error")


def test_addition_inspector_adds_typed_numbers(server, page):
    url, ids, _ = server
    page.goto(f"{url}#/run/{ids['addition-lstm']}")
    inspected(page, 1)
    page.fill("#a", "100")
    page.fill("#b", "27")
    page.select_option("#base", "10")
    page.click("#add")
    inspected(page, 2)
    steps = len(format(100, "b")) + 1
    assert "127" in page.inner_text("#prediction")
    assert page.get_attribute("table#bits", "data-steps") == str(steps)
    headers = page.eval_on_selector_all("table#bits tr th:first-child",
                                        "ths => ths.map(t => t.textContent)")
    assert len(headers) == 8, "steps, a, b, true sum, model, P(1), carry, then the carry unit"
    assert headers[6] == "true carry out" and headers[7].startswith("unit ")
    assert heatmap_rows(page, "hidden") == [steps] and heatmap_rows(page, "cell") == [steps]
    step_back_once(page)
    assert step_shown(page) == steps - 1
    column = page.eval_on_selector_all("table#bits tr:first-child th",
                                       "ths => ths.findIndex(t => t.classList.contains('current'))")
    assert column == steps - 1  # header cell 0 names the rows
