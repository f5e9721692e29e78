"""The ``synergic`` command. It knows recipes and run directories, not the loop's insides.

One module per command group: :mod:`~synergic.cli.runs` (run, resume, eval, predict),
:mod:`~synergic.cli.experiments` (sweep, report), :mod:`~synergic.cli.cv` (cv),
:mod:`~synergic.cli.compare` (compare), :mod:`~synergic.cli.tools` (explain, export),
:mod:`~synergic.cli.recipes` (recipe ...), :mod:`~synergic.cli.components` (list, plugins), :mod:`~synergic.cli.data` (data ...); how they
print is in :mod:`~synergic.cli.output`, the one progress display of training in
:mod:`~synergic.cli.progress`. Importing this package imports click and rich, not torch: each
command imports what it needs when it runs.
"""

from __future__ import annotations

import re
import sys

import click

from synergic import __version__
from synergic.cli.compare import compare
from synergic.cli.components import list_command, plugins
from synergic.cli.cv import cv
from synergic.cli.data import data
from synergic.cli.experiments import report, sweep
from synergic.cli.output import console
from synergic.cli.recipes import recipe
from synergic.cli.runs import eval_command, predict, resume, run
from synergic.cli.tools import explain, export
from synergic.errors import SynergicError

__all__ = ["cli", "main", "user_message"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synergic")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """synergic: synergic deep learning (SDL^n) for medical image classification.

    Start with: synergic run recipes/demo.yaml
    """
    ctx.obj = {"debug": debug}


for _command in (run, resume, eval_command, predict, list_command, plugins, recipe, data, sweep,
                 cv, report, compare, explain, export):
    cli.add_command(_command)


def _register_plugin_commands() -> None:
    # Discovery only imports the plugins' entry modules: `synergic --help` stays fast.
    from synergic.plugins import discover_plugins, pm

    discover_plugins()
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as error:  # a plugin's command must not break the others
            print(f"warning: synergic plugin '{impl.plugin_name}' could not add its commands: "
                  f"{type(error).__name__}: {error}", file=sys.stderr)


def user_message(error: SynergicError) -> str:
    """The one line to show for ``error``.

    An error raised in a DataLoader worker (``train.num_workers > 0``) is re-raised in the main
    process with the worker's traceback folded into its message; the user's line is the
    original message, on the traceback's last line.
    """
    message = str(error).strip()
    if "\n" in message and "Original Traceback" in message:
        last = message.splitlines()[-1]
        original = re.match(r"^[\w.]*(?:Error|Exception): (.+)$", last)
        if original:
            return original.group(1)
    return message


def _format_warning(message, category, filename, lineno, line=None) -> str:
    # One line for users; the file and line of the warning call mean nothing to them.
    return f"warning: {message}\n"


def quiet_openmp_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), unless
    the user set a policy.

    torch's CPU kernels run on OpenMP threads, which by default spin while they wait for work. On a
    machine whose cores are shared, spinning threads take the cores other threads need: the
    demo's training took 1.8x the wall time and 2.2x the CPU time with spinning threads on a
    loaded 2-core machine (docs/benchmarks.md, "CPU threads"). Must run before torch is imported:
    OpenMP reads the variable once, when it starts.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv=None) -> None:
    import warnings

    quiet_openmp_threads()

    from synergic.data.names import printable_streams

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if not debug:
        warnings.formatwarning = _format_warning
    # A path that is not UTF-8 (given on the command line, found in a folder) prints as \xNN.
    printable_streams(sys.stdout, sys.stderr)
    try:
        _register_plugin_commands()
        cli.main(args=argv, prog_name="synergic", standalone_mode=False)
    except click.exceptions.Abort:
        console(stderr=True).print("aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except SynergicError as error:
        if debug:
            raise
        from rich.markup import escape  # a message may hold [brackets]: a list, a shape

        message = escape(user_message(error))
        console(stderr=True).print(f"[bold red]error:[/] {message}", soft_wrap=True)
        sys.exit(error.exit_code)  # 130 for a stop by Ctrl-C, as below
    except KeyboardInterrupt:
        console(stderr=True).print("interrupted")
        sys.exit(130)
