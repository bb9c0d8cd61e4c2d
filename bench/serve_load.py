"""Load on ``rnnlab serve``: concurrent clients sending MNIST inspect requests.

Starts a real server (``python -m rnnlab serve RUN --port 0``, uvicorn) over one MNIST
run, then ``--clients`` threads, each on its own keep-alive connection, send
``--requests`` inspect requests in all: each a different drawing (MNIST test digits,
inverted and scaled to a 280x280 canvas-sized PNG, as the page uploads them; drawn
strokes when the data set is not here). Prints latency percentiles, errors,
throughput and the server's resident memory before (model loaded, after a warm-up)
and after. Target on the project's 2-core machine: no error, p95 under 150 ms, memory
flat.

    python bench/serve_load.py runs/mnist [--clients 20] [--requests 500]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from rnnlab.core.autotune import cpu_model
from rnnlab.tasks.mnist.data import load_test_images

CANVAS = 280  # the page's drawing canvas, in pixels
DRAWINGS = 64  # distinct images cycled through


def drawings(count: int) -> list[bytes]:
    """PNG bytes of ``count`` digits, dark ink on white at canvas size."""
    found = load_test_images("mnist", None)
    rng = np.random.default_rng(0)
    pngs = []
    for i in range(count):
        if found is not None:
            pixels = 255 - np.asarray(found[i], dtype=np.uint8)  # (28, 28) dark on white
        else:
            pixels = np.full((28, 28), 255, dtype=np.uint8)
            row = rng.integers(4, 20)
            pixels[row : row + 6, 6:22] = 0
        image = Image.fromarray(pixels).resize((CANVAS, CANVAS), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"drawing.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += png + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "serve", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "open http" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split("open ")[1].split()[0]


def client(url: str, path: str, bodies: list[tuple[bytes, str]], jobs: list[int],
           lock: threading.Lock, latencies: list[float], errors: list[str]) -> None:
    where = urlparse(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    while True:
        with lock:
            if not jobs:
                break
            job = jobs.pop()
        body, content_type = bodies[job % len(bodies)]
        started = time.perf_counter()
        try:
            connection.request("POST", path, body, {"Content-Type": content_type})
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                errors.append(f"{response.status}: {data[:120]!r}")
        except (OSError, http.client.HTTPException) as err:
            errors.append(f"{type(err).__name__}: {err}")
            connection.close()
            connection = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
            continue
        latencies.append(time.perf_counter() - started)
    connection.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an MNIST run folder")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args(argv)
    bodies = [multipart(png) for png in drawings(DRAWINGS)]
    proc, url = start_server(args.run)
    try:
        where = urlparse(url)
        probe = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
        probe.request("GET", "/api/runs")
        runs = json.loads(probe.getresponse().read())["runs"]
        path = f"/api/runs/{runs[0]['id']}/inspect"
        warm_latencies: list[float] = []
        client(url, path, bodies, list(range(20)), threading.Lock(), warm_latencies, [])
        before = rss_mib(proc.pid)
        jobs, lock = list(range(args.requests)), threading.Lock()
        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(url, path, bodies, jobs, lock,
                                                         latencies, errors))
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ms = [1000 * v for v in latencies]
    print(f"machine: {cpu_model()}")
    print(f"{args.clients} clients, {args.requests} inspect requests to {args.run} "
          f"({len(bodies)} different drawings, {CANVAS}x{CANVAS} PNG uploads)")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    print(f"latency ms: p50 {percentile(ms, 50):.1f}, p95 {percentile(ms, 95):.1f}, "
          f"p99 {percentile(ms, 99):.1f}, max {max(ms, default=float('nan')):.1f}, "
          f"mean {statistics.fmean(ms) if ms else float('nan'):.1f}")
    print(f"throughput: {len(latencies) / seconds:.1f} requests/s over {seconds:.1f} s")
    print(f"server RSS: {before:.0f} MiB before, {after:.0f} MiB after "
          f"({after - before:+.0f} MiB)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
