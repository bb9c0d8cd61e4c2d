"""``rnnlab serve``: the runs index, the JSON API over small real runs, the inspector
against ``rnnlab predict``, and every bad request answered with a 4xx and a message."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
from starlette.testclient import TestClient

import rnnlab
from rnnlab.cli import main
from rnnlab.cli.serve import is_loopback, served_folders
from rnnlab.core.cells import get_cell
from rnnlab.core.errors import RunFolderError
from rnnlab.serve.app import MAX_JSON_BYTES, MAX_UPLOAD_BYTES, create_app
from rnnlab.serve.index import run_id
from rnnlab.serve.inspect import MAX_BITS, MAX_DIGITS, carry_bits

ROOT = Path(__file__).resolve().parents[1]


# -- small real runs, trained once per session ------------------------------------------
def train_runs(root: Path, mnist_data: Path) -> Path:
    """runs/ with a bidirectional LSTM on fake MNIST (and a copy named robust), a GRU
    recall run and an LSTM addition run; trained once, reused by every serve test module."""
    runs = root / "runs"
    if (runs / ".complete").is_file():
        return runs
    torch.manual_seed(0)
    rnnlab.train("mnist", cell="lstm", hidden=12, bidirectional=True, dry_run=True,
                 data_dir=str(mnist_data), threads=1, out=runs / "mnist-bilstm")
    shutil.copytree(runs / "mnist-bilstm", runs / "mnist-robust-copy")
    rnnlab.train("recall", cell="gru", hidden=8, dry_run=True, no_figures=True, threads=1,
                 out=runs / "recall-gru")
    rnnlab.train("addition", hidden=6, loss="bce", dry_run=True, no_figures=True, threads=1,
                 out=runs / "addition-lstm")
    (runs / ".complete").write_text("")
    return runs


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, fake_mnist_root) -> Path:
    return train_runs(tmp_path_factory.getbasetemp() / "serve", fake_mnist_root)


@pytest.fixture(scope="module")
def client(runs_root):
    app = create_app([runs_root])
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


def ids(client) -> dict[str, str]:
    """Run name (the folder's) -> id."""
    return {Path(r["name"]).name: r["id"] for r in client.get("/api/runs").json()["runs"]}


def drawn_digit(size: int = 280) -> bytes:
    """A PNG of a hand-drawn-looking 7: dark strokes on white, as the page sends."""
    img = Image.new("L", (size, size), 255)
    pixels = np.asarray(img).copy()
    pixels[60:78, 60:220] = 0  # the bar
    for row in range(78, 230):  # the stem, leaning left
        col = 205 - (row - 78) // 2
        pixels[row, col - 9 : col + 9] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a tiny (bomb-like) body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def upload(client, run: str, data: bytes, name: str = "drawing.png"):
    return client.post(f"/api/runs/{run}/inspect", files={"file": (name, data, "image/png")})


# -- the runs ---------------------------------------------------------------------------
def test_lists_finished_runs_with_task_model_and_accuracy(client, runs_root):
    (runs_root / "unfinished").mkdir(exist_ok=True)
    (runs_root / "unfinished" / "config.json").write_text('{"task": "recall"}')
    runs = client.get("/api/runs").json()["runs"]
    names = [Path(r["name"]).name for r in runs]
    assert sorted(names) == ["addition-lstm", "mnist-bilstm", "mnist-robust-copy", "recall-gru"]
    assert names.index("mnist-robust-copy") < names.index("mnist-bilstm"), "robust runs first"
    mnist = next(r for r in runs if r["name"].endswith("mnist-bilstm"))
    summary = json.loads((runs_root / "mnist-bilstm" / "summary.json").read_text())
    assert mnist["value"] == pytest.approx(100 * summary["test"]["accuracy"])
    assert (mnist["cell"], mnist["hidden"], mnist["bidirectional"]) == ("lstm", 12, True)
    assert mnist["input_kind"] == "image" and mnist["settings"]["epochs"] == 1
    assert len(mnist["date"]) == 16
    assert mnist["id"] == run_id((runs_root / "mnist-bilstm").resolve())
    only = client.get("/api/runs?task=recall").json()["runs"]
    assert [r["task"] for r in only] == ["recall"] and only[0]["input_kind"] == "digits"


def test_run_details_carry_curves_figures_and_the_cells_gates(client, runs_root):
    run = ids(client)["mnist-bilstm"]
    details = client.get(f"/api/runs/{run}").json()
    assert len(details["metrics"]) == 1 and "valid_accuracy" in details["metrics"][0]
    assert details["config"]["model"]["hidden_size"] == 12
    inspector = details["inspector"]
    assert inspector["gates"] == list(get_cell("lstm").gates) and inspector["directions"] == 2
    assert inspector["input_kind"] == "image" and len(inspector["classes"]) == 10
    names = {f["name"] for f in details["figures"]}
    assert "learning_curves.png" in names or names, "the run drew figures"
    figure = details["figures"][0]
    got = client.get(figure["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content == (runs_root / "mnist-bilstm" / "figures" / figure["name"]).read_bytes()
    assert client.get(f"/api/runs/{run}/figures/nothing.png").status_code == 404


@pytest.mark.parametrize("path", [
    "/api/runs/..", "/api/runs/%2e%2e", "/api/runs/%2e%2e%2fetc%2fpasswd", "/api/runs/%2Fetc",
    "/api/runs/..%2F..%2Fetc%2Fpasswd/inspect", "/api/runs/runs%2Fmnist-bilstm",
    "/api/runs/0000000000000000", "/api/runs/%252e%252e",
])
def test_run_ids_are_opaque_keys_never_paths(client, path):
    got = client.get(path) if not path.endswith("inspect") else client.post(path, json={})
    assert got.status_code == 404 and got.json()["error"]


def test_a_figure_name_is_never_a_path(client):
    run = ids(client)["mnist-bilstm"]
    for name in ("..%2Fsummary.json", "%2e%2e%2fconfig.json", "summary.json", "%2e%2e"):
        got = client.get(f"/api/runs/{run}/figures/{name}")
        assert got.status_code == 404 and "error" in got.json()


def test_symlinks_that_leave_the_folders_are_not_served(runs_root, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copytree(runs_root / "recall-gru", served / "inside")
    (served / "outside").symlink_to(runs_root / "addition-lstm", target_is_directory=True)
    (served / "inside" / "figures").mkdir(exist_ok=True)
    (served / "inside" / "figures" / "leak.png").symlink_to(runs_root / "mnist-bilstm" /
                                                           "summary.json")
    linked_config = served / "linked"
    linked_config.mkdir()
    for name in ("config.json", "summary.json"):
        (linked_config / name).symlink_to(runs_root / "addition-lstm" / name)
    with TestClient(create_app([served]), base_url="http://127.0.0.1") as c:
        runs = c.get("/api/runs").json()["runs"]
        assert [Path(r["name"]).name for r in runs] == ["inside"]
        details = c.get(f"/api/runs/{runs[0]['id']}").json()
        assert details["figures"] == []
        assert c.get(f"/api/runs/{runs[0]['id']}/figures/leak.png").status_code == 404
        outside = run_id((runs_root / "addition-lstm").resolve())
        assert c.get(f"/api/runs/{outside}").status_code == 404


# -- inspecting -------------------------------------------------------------------------
def test_mnist_inspect_reads_row_by_row_in_both_directions(client):
    run = ids(client)["mnist-bilstm"]
    got = upload(client, run, drawn_digit())
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["steps"] == 28 and np.asarray(body["input"]["pixels"]).shape == (28, 28)
    probabilities = np.asarray(body["probabilities"])  # (rows, classes)
    assert probabilities.shape == (28, 10)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)  # 10 values rounded to 1e-4
    assert np.allclose(probabilities[-1], body["prediction"]["probabilities"], atol=1e-4)
    assert body["prediction"]["label"] == int(np.argmax(body["prediction"]["probabilities"]))
    assert body["layers"] == [{"layer": 0, "direction": "forward"},
                              {"layer": 0, "direction": "backward"}]
    assert [np.asarray(h).shape for h in body["hidden"]] == [(28, 12), (28, 12)]
    assert list(body["gates"]) == list(get_cell("lstm").gates)
    assert all(np.asarray(g).shape == (2, 28, 12) for g in body["gates"].values())
    forget = np.asarray(body["gates"]["forget"])
    assert forget.min() >= 0 and forget.max() <= 1 and body["cell"] is not None


def test_the_inspector_and_rnnlab_predict_agree_on_the_same_png(client, runs_root, tmp_path,
                                                               capsys):
    run_dir = runs_root / "mnist-bilstm"
    png = tmp_path / "drawing.png"
    png.write_bytes(drawn_digit())
    page = upload(client, ids(client)["mnist-bilstm"], png.read_bytes()).json()["prediction"]
    assert main(["predict", str(run_dir), str(png), "--json", "--top", "10"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert cli["prediction"] == page["label"]
    by_class = {p["class"]: p["probability"] for p in cli["probabilities"]}
    assert [by_class[c] for c in range(10)] == pytest.approx(page["probabilities"], abs=1e-6)


def test_recall_inspect_marks_k_and_answers_as_predict_does(client, runs_root):
    got = client.post(f"/api/runs/{ids(client)['recall-gru']}/inspect",
                      json={"digits": "3 1 4 1 5 9"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["input"] == {"digits": [3, 1, 4, 1, 5, 9], "k": 1} and body["steps"] == 6
    assert np.asarray(body["probabilities"]).shape == (6, 10)
    assert list(body["gates"]) == ["reset", "update", "new"] and body["cell"] is None
    expected = rnnlab.load(runs_root / "recall-gru", device="cpu").predict([3, 1, 4, 1, 5, 9])
    assert body["prediction"]["label"] == expected.label and body["prediction"]["true"] == 1
    assert body["prediction"]["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    as_list = client.post(f"/api/runs/{ids(client)['recall-gru']}/inspect",
                          json={"digits": [3, 1, 4, 1, 5, 9]}).json()
    assert as_list["prediction"] == body["prediction"]
    long = client.post(f"/api/runs/{ids(client)['recall-gru']}/inspect",
                       json={"digits": "1 " * 40}).json()
    assert long["notes"] and "outside the trained lengths" in long["notes"][0]


def test_addition_inspect_shows_bits_carry_and_the_carry_unit(client, runs_root):
    run = ids(client)["addition-lstm"]
    got = client.post(f"/api/runs/{run}/inspect", json={"a": "1011", "b": "110"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["steps"] == 5 and len(body["probabilities"]) == 5
    assert body["input"]["carry"] == carry_bits(11, 6, 5) == [0, 1, 1, 1, 0]
    expected = rnnlab.load(runs_root / "addition-lstm", device="cpu").predict("1011", "110")
    assert body["prediction"]["model_sum"] == expected.record["model_sum"]
    assert body["prediction"]["true_sum_decimal"] == "17"
    bits = [int(p > 0.5) for p in body["probabilities"]]
    assert bits == body["prediction"]["bits"] == [int(b) for b in reversed(expected.record[
        "model_sum"])]
    unit = body["carry_unit"]
    assert unit["state"] in ("hidden", "cell") and 0 <= unit["unit"] < 6
    assert -1 <= unit["correlation"] <= 1 and len(unit["values"]) == 5
    decimal = client.post(f"/api/runs/{run}/inspect",
                          json={"a": "11", "b": "6", "base": 10}).json()
    assert decimal["input"]["a"] == "1011" and decimal["prediction"] == body["prediction"]
    from_ints = client.post(f"/api/runs/{run}/inspect", json={"a": 11, "b": 6}).json()
    assert from_ints["prediction"] == body["prediction"]


def test_carry_bits_match_python_addition():
    rng = random.Random(3)
    for _ in range(200):
        a, b = rng.getrandbits(12), rng.getrandbits(12)
        carries = carry_bits(a, b, 13)
        for t in range(13):  # the carry out of step t is the overflow of the low t+1 bits
            low = (1 << (t + 1)) - 1
            assert carries[t] == ((a & low) + (b & low)) >> (t + 1)


def test_a_model_is_loaded_once_and_cached(runs_root):
    app = create_app([runs_root], cache_size=1)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        run = ids(c)["recall-gru"]
        for _ in range(3):
            assert c.post(f"/api/runs/{run}/inspect", json={"digits": "1 2 3"}).status_code == 200
        cache = app.state.explorer.cache
        (first,) = cache.inspectors.values()
        c.post(f"/api/runs/{ids(c)['addition-lstm']}/inspect", json={"a": "1", "b": "1"})
        assert len(cache.inspectors) == 1 and first not in cache.inspectors.values()


# -- bad requests -----------------------------------------------------------------------
def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE_CASES = [
    ("no body", {}, 422),
    ("json, not an image", {"json": {"file": "x"}}, 422),
    ("multipart without 'file'", {"files": {"other": ("a.png", b"abc", "image/png")}}, 422),
    ("not an image", {"files": {"file": ("a.png", b"not a png at all", "image/png")}}, 422),
    ("empty file", {"files": {"file": ("a.png", b"", "image/png")}}, 422),
    ("a blank page", {"files": {"file": ("a.png", blank_png(), "image/png")}}, 422),
    ("a 100-megapixel PNG", {"files": {"file": ("big.png", png_header_only(10_000, 10_000),
                                                "image/png")}}, 413),
    ("a truncated PNG", {"files": {"file": ("t.png", drawn_digit()[:200], "image/png")}}, 422),
    ("a body over the upload limit", {"content": b"0" * (MAX_UPLOAD_BYTES + 1),
                                      "headers": {"content-type": "image/png"}}, 413),
    ("a broken multipart body", {"content": b"--x\r\nbroken", "headers": {
        "content-type": "multipart/form-data; boundary=x"}}, 422),
]


@pytest.mark.parametrize("case,request_args,status", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_bad_image_requests_get_a_4xx_and_a_message(client, case, request_args, status):
    run = ids(client)["mnist-bilstm"]
    got = client.post(f"/api/runs/{run}/inspect", **request_args)
    assert got.status_code == status, got.text
    assert got.json()["error"] and "Traceback" not in got.text
    assert upload(client, run, drawn_digit()).status_code == 200, "the server keeps serving"


JSON_CASES = [
    ("recall-gru", b"{not json", 422), ("recall-gru", b"[1, 2, 3]", 422),
    ("recall-gru", b'{"digits": {"a": 1}}', 422), ("recall-gru", b'{"digits": "3 x 1"}', 422),
    ("recall-gru", b'{"digits": [1, true, 3]}', 422), ("recall-gru", b'{"digits": [1.5, 2]}', 422),
    ("recall-gru", b'{"digits": "3"}', 422), ("recall-gru", b'{"numbers": "3 1 4"}', 422),
    ("recall-gru", json.dumps({"digits": "1 " * (MAX_DIGITS + 1)}).encode(), 422),
    ("recall-gru", json.dumps({"digits": [1] * (MAX_DIGITS + 1)}).encode(), 422),
    ("recall-gru", b'{"digits": "' + b"1 " * MAX_JSON_BYTES + b'"}', 413),
    ("recall-gru", b"\xff\xfe\x00garbage", 422), ("recall-gru", b"[" * 100_00 + b"]" * 100_00, 422),
    ("addition-lstm", b'{"a": "102", "b": "1"}', 422), ("addition-lstm", b'{"a": "1"}', 422),
    ("addition-lstm", b'{"a": "1", "b": "1", "base": 7}', 422),
    ("addition-lstm", b'{"a": -3, "b": 1}', 422), ("addition-lstm", b'{"a": true, "b": 1}', 422),
    ("addition-lstm", b'{"a": 1.5, "b": 1}', 422), ("addition-lstm", b'{"a": "", "b": "1"}', 422),
    ("addition-lstm", b'{"a": "12x", "b": "3", "base": 10}', 422),
    ("addition-lstm", json.dumps({"a": "1" * (MAX_BITS + 1), "b": "1"}).encode(), 422),
    ("addition-lstm", json.dumps({"a": 2 ** (MAX_BITS + 1), "b": 1}).encode(), 422),
    ("addition-lstm", json.dumps({"a": "9" * 100, "b": "1", "base": 10}).encode(), 422),
]


@pytest.mark.parametrize("run,body,status", JSON_CASES)
def test_bad_json_inputs_get_a_4xx_and_a_message(client, run, body, status):
    got = client.post(f"/api/runs/{ids(client)[run]}/inspect", content=body,
                      headers={"content-type": "application/json"})
    assert got.status_code == status, got.text
    assert isinstance(got.json()["error"], str) and got.json()["error"]


def test_wrong_methods_and_unknown_paths_get_json_errors(client):
    run = ids(client)["recall-gru"]
    assert client.get(f"/api/runs/{run}/inspect").status_code == 405
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"]


def test_only_local_host_names_are_answered_and_pages_say_what_they_may_load(client):
    assert client.get("/api/runs", headers={"host": "attacker.example"}).status_code == 400
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def fuzz_bodies(rng: random.Random, count: int) -> list[tuple[bytes, str]]:
    """Random bytes and random JSON values under various content types."""
    def value(depth: int = 0):
        kinds = ["int", "float", "str", "bool", "none", "list", "dict"]
        kind = rng.choice(kinds if depth < 3 else kinds[:5])
        if kind == "int":
            return rng.choice([0, 1, -1, 2**70, rng.randint(-1000, 1000)])
        if kind == "float":
            return rng.choice([0.5, -1e308, 1e-300, rng.random()])
        if kind == "str":
            return rng.choice(["", "1011", "3 1 4", "0" * 300, "\u00e9\u4e2d", "1 " * 50,
                               "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(8))])
        if kind == "list":
            return [value(depth + 1) for _ in range(rng.randint(0, 6))]
        if kind == "dict":
            keys = ["digits", "a", "b", "base", "file", "x"]
            return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 4))}
        return {"bool": rng.random() < 0.5, "none": None}[kind]
    bodies = []
    types = ["application/json", "image/png", "multipart/form-data; boundary=zz", "text/plain", ""]
    for _ in range(count):
        if rng.random() < 0.5:
            body = json.dumps(value()).encode()
        else:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        bodies.append((body, rng.choice(types)))
    return bodies


def test_fuzzing_the_inspect_endpoint_finds_no_500(client):
    rng = random.Random(14)
    runs = list(ids(client).values())
    for body, content_type in fuzz_bodies(rng, 300):
        run = rng.choice(runs)
        headers = {"content-type": content_type} if content_type else {}
        got = client.post(f"/api/runs/{run}/inspect", content=body, headers=headers)
        assert got.status_code < 500, (body[:80], content_type, got.text)
        if got.status_code >= 400:
            assert got.json()["error"]


# -- the command -------------------------------------------------------------------------
def test_the_command_refuses_missing_folders_with_one_line(tmp_path, monkeypatch, capsys):
    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunFolderError, match="runs/ or reports/"):
        served_folders([])
    (tmp_path / "reports").mkdir()
    assert served_folders([]) == [Path("reports")]
    assert main(["serve", "reports", "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_the_command_serves_and_warns_when_not_local(runs_root):
    """A real server process: it prints its URL (and a warning off loopback) and answers."""
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "serve", str(runs_root), "--host",
                             "0.0.0.0", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert "open http://127.0.0.1:" in line and "4 finished runs" in line, line
        url = line.split("open ")[1].split()[0]
        deadline, answer = time.monotonic() + 20, None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = urllib.request.urlopen(url + "api/runs").read()
            except OSError:
                time.sleep(0.1)
        assert len(json.loads(answer)["runs"]) == 4
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "warning: serving on 0.0.0.0" in err
