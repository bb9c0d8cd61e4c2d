"""``rnnlab report RUNS_DIR``: the report, written from run records only."""

from __future__ import annotations


def add_parser(commands) -> None:
    from rnnlab.cli import HelpFormatter

    p = commands.add_parser("report", help="rebuild the report from run records",
                            formatter_class=HelpFormatter)
    p.set_defaults(func=lambda args: print("not implemented yet") or 1)
