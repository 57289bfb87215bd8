"""Every command and option explains itself in ``--help``."""

import click
from click.testing import CliRunner

from midivae.cli import main


def _commands(cmd: click.Command, path: tuple[str, ...] = ()):
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _commands(cmd.get_command(ctx, name), path + (name,))
    else:
        yield path, cmd


def test_every_command_and_option_has_help():
    missing = [f"{' '.join(path)} {p.opts[0]}" for path, cmd in _commands(main) for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not p.help]
    undocumented = [" ".join(path) for path, cmd in _commands(main) if not (cmd.help or "").strip()]
    assert not missing and not undocumented, (missing, undocumented)


def test_help_of_every_command_renders():
    for path, _ in _commands(main):
        res = CliRunner().invoke(main, [*path, "--help"])
        assert res.exit_code == 0 and "Usage:" in res.output, (path, res.output)


def test_the_command_starts_without_torch_or_scipy():
    """Loading the CLI (every ``--help``, song-id searches) must not pay for torch or scipy: they
    load with the command that needs them (0.5 -> 0.18 s for ``midivae --help``)."""
    import subprocess
    import sys

    code = "import sys, midivae.cli; print(sorted({'torch', 'scipy', 'faiss'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_evaluation_package_names_load_on_first_use():
    import midivae.evaluate as E

    for name in E.__all__:
        assert getattr(E, name).__module__.startswith("midivae.evaluate."), name
