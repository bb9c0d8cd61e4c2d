"""``rnnlab reproduce``: every configuration of the exercise, then the report."""

from __future__ import annotations


def add_parser(commands) -> None:
    from rnnlab.cli import HelpFormatter

    p = commands.add_parser("reproduce", help="run the whole exercise and write the report",
                            formatter_class=HelpFormatter)
    p.set_defaults(func=lambda args: print("not implemented yet") or 1)
