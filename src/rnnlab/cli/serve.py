"""``rnnlab serve``: the explorer (``rnnlab.serve``) over the finished runs under some
folders, in the browser. Starlette and uvicorn (the ``serve`` extra) load only when
the command runs, so the rest of the command line starts as fast without them."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import torch

from rnnlab.cli.parsing import HelpFormatter
from rnnlab.core.errors import ConfigError, RunFolderError, UserError

DEFAULT_FOLDERS = ("runs", "reports")
DESCRIPTION = """\
A local web app over every finished run under RUNS_DIR (default: runs/ and
reports/): the runs with their settings, curves and figures, and an inspector
that shows the model reading an input step by step: draw a digit for an MNIST
run, type digits for a recall run or two numbers for an addition run, and watch
the answer, the hidden state and every gate of the cell, row by row.

The page and its scripts ship with rnnlab (no network needed). The server binds
127.0.0.1, this machine only, unless --host says otherwise. See docs/serve.md.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("serve", help="explore runs in the browser: watch a network read",
                            description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("folders", nargs="*", metavar="RUNS_DIR",
                   help="folders searched for finished runs (default: runs/ and reports/, "
                   "those that exist)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but a loopback address opens the explorer "
                   "to other machines")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--models", type=int, default=8, metavar="N",
                   help="models kept loaded (the most recently used runs)")
    p.set_defaults(func=run_serve)


def served_folders(folders: list[str]) -> list[Path]:
    """The folders named (each must exist), or the default ones that exist."""
    if folders:
        for folder in folders:
            if not Path(folder).is_dir():
                raise RunFolderError(f"{folder}: no such folder")
        return [Path(f) for f in folders]
    found = [Path(f) for f in DEFAULT_FOLDERS if Path(f).is_dir()]
    if not found:
        raise RunFolderError("no runs/ or reports/ folder here; name the folders to serve")
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 takes a free one."""
    if not 0 <= port <= 65535:
        raise ConfigError("port", f"must be in 0..65535, got {port}")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ConfigError("host", f"{host!r} is not an address of this machine ({err.strerror})"
                          ) from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as err:
        sock.close()
        raise ConfigError("port", f"{port} on {host}: {err.strerror or err}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def run_serve(args: argparse.Namespace) -> int:
    roots = served_folders(args.folders)
    if args.models < 1:
        raise ConfigError("models", f"must be >= 1, got {args.models}")
    try:  # lazy: starlette and uvicorn are the optional serve extra, loaded only to serve
        import uvicorn

        # lazy: the app imports starlette (the serve extra); `rnnlab --help` stays as fast
        from rnnlab.serve.app import LOCAL_HOSTS, create_app
    except ImportError as err:
        raise UserError(f"rnnlab serve needs the serve extra ({err.name} is missing): "
                        "pip install 'rnnlab[serve]'") from None
    torch.set_num_threads(1)  # one thread per request: concurrent requests share the cores
    local = is_loopback(args.host)
    app = create_app(roots, cache_size=args.models, allowed_hosts=LOCAL_HOSTS if local else None)
    sock = bind(args.host, args.port)
    url = url_of(sock, args.host)
    runs = len(app.state.explorer.index.list())
    if not local:
        sys.stderr.write(f"rnnlab: warning: serving on {args.host}: other machines can reach "
                         "the explorer and your runs\n")
    print(f"rnnlab serve: {runs} finished runs under {', '.join(map(str, roots))}; "
          f"open {url}  (Ctrl+C stops)", flush=True)
    if args.open:
        threading.Timer(0.5, webbrowser.open, [url]).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])
    return 0
