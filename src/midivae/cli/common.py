"""Small helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def progress_enabled(quiet: bool) -> bool:
    """Progress bars only on an interactive terminal, and never with --quiet."""
    return not quiet and sys.stderr.isatty()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")
