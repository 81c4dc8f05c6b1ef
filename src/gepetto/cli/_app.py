"""The typer application of the ``gepetto`` command, and the error -> exit code mapping.

Typer needs the annotations at run time, so this module does not postpone them.
"""

import errno
import importlib
import json
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.exceptions import TyperException

from gepetto.cli import CommandError, ExitCode
from gepetto.errors import ConfigError, GepettoError
from gepetto.runview import NotARun, RunView, open_run
from gepetto.storage.base import RunInUse, StorageError

__all__ = ["app", "run_command"]

_EPILOG = """\
\b
Examples:
  gepetto optimize examples/task_keywords.py --budget 60 --run-dir runs/kw
  gepetto optimize examples/task_ticket_routing.toml --budget 40 \\
      --model local/qwen2.5-coder-0.5b --reflection-model local/qwen2.5-coder-1.5b
  gepetto status runs/kw
  gepetto show runs/kw 3
  gepetto export runs/kw > best.json
  gepetto resume runs/kw --budget 200
  gepetto report runs/kw
  gepetto dashboard runs/kw
\b
Exit codes: 0 ok, 1 run failed, 2 bad input, 3 damaged or unreadable store,
  4 run in use by another process, 5 something missing here (an extra, the
  dashboard, a free port), 130 interrupted (resume it).
"""

app = typer.Typer(
    name="gepetto",
    help="Optimize prompts with GEPA from a task file; watch, inspect, export and report runs.",
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

RunArg = Annotated[
    str, typer.Argument(help="A run folder (run_dir), a journal file or a storage URL.")
]
RunIdOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at run time
    typer.Option("--run-id", help="The run in a store of several (default: its only run)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the data as JSON.")]


def _open(source: str, run_id: Optional[str]) -> RunView:  # noqa: UP045
    return open_run(source, run_id)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


@app.command(epilog="Example: gepetto optimize task.py --budget 100 --run-dir runs/a")
def optimize(
    task: Annotated[Path, typer.Argument(help="The task file (.py, .toml, or .yaml).")],
    budget: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--budget", min=1, help="Metric-call budget (max_metric_calls)."),
    ] = None,
    run_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--run-dir", help="Where the run is kept (default: runs/TASK-TIME)."),
    ] = None,
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--model", help="The task model (task_lm), e.g. local/qwen2.5-coder-0.5b."),
    ] = None,
    reflection_model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--reflection-model", help="The model that rewrites the texts."),
    ] = None,
    parallel: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--parallel", min=1, help="Evaluations at once (max_concurrency)."),
    ] = None,
    max_cost: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--max-cost", min=0.0, help="Dollar cap on LM calls (max_cost_usd)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No log lines.")] = False,
) -> None:
    """Optimize the texts of a task file; Ctrl-C stops and keeps the run for `resume`."""
    from gepetto.cli._run import CliOptions, optimize_task

    options = CliOptions(budget, model, reflection_model, parallel, max_cost, quiet)
    raise typer.Exit(optimize_task(task, run_dir, options))


@app.command(epilog="Example: gepetto resume runs/a --budget 300")
def resume(
    run_dir: Annotated[Path, typer.Argument(help="The run folder of `gepetto optimize`.")],
    budget: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--budget", min=1, help="The new total metric-call budget."),
    ] = None,
    task: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--task", help="The task file (default: the one the run was made from)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No log lines.")] = False,
) -> None:
    """Continue a stopped or interrupted run (only unfinished work is paid for)."""
    from gepetto.cli._run import resume_run

    raise typer.Exit(resume_run(run_dir, task, budget, quiet))


@app.command(epilog="Example: gepetto status runs/a --json")
def status(run: RunArg, run_id: RunIdOpt = None, as_json: JsonOpt = False) -> None:
    """Live or finished: budget, cost, best candidate, Pareto front, stop reason."""
    from gepetto.cli._text import summary_text
    from gepetto.runview import summary

    with _open(run, run_id) as view:
        head = summary(view)
    if as_json:
        _print_json(head.to_json())
    else:
        print(summary_text(head))


@app.command(epilog="Example: gepetto show runs/a 4 --no-prompt")
def show(
    run: RunArg,
    candidate: Annotated[
        Optional[int],  # noqa: UP045
        typer.Argument(help="The candidate id (default: the best)."),
    ] = None,
    run_id: RunIdOpt = None,
    prompt: Annotated[
        bool, typer.Option("--prompt/--no-prompt", help="Show the reflection prompt.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """A candidate's texts, scores, parents, diff to each parent, and the reflection prompt
    and reply that made it."""
    from gepetto.cli._text import candidate_text
    from gepetto.runview import candidate_detail

    with _open(run, run_id) as view:
        chosen = view.state.best_id if candidate is None else candidate
        if not view.state.candidates:
            raise CommandError(f"{run} has no candidate yet")
        try:
            detail = candidate_detail(view, chosen)
        except KeyError as error:
            raise CommandError(str(error.args[0])) from None
    if as_json:
        _print_json(detail.to_json())
    else:
        sys.stdout.write(candidate_text(detail, prompts=prompt))


@app.command(epilog="Examples: gepetto export runs/a > best.json; gepetto export runs/a --all")
def export(
    run: RunArg,
    run_id: RunIdOpt = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="json: id, score and texts; text: the texts only."),
    ] = "json",
    whole: Annotated[
        bool, typer.Option("--all", help="The whole run (header and records) as JSON lines.")
    ] = False,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Write to this file (default: standard output)."),
    ] = None,
) -> None:
    """The best candidate as JSON or text, or (--all) the whole run as JSON lines."""
    from gepetto.runview import summary
    from gepetto.storage.export import export_jsonl

    if fmt not in ("json", "text"):
        raise CommandError(f"--format {fmt!r} is not known: use json or text")
    with _open(run, run_id) as view:
        if whole:
            export_jsonl(view.store.storage, view.run_id, output if output else sys.stdout)
            return
        head = summary(view)
    if head.best_id is None:
        raise CommandError(f"{run} has no candidate yet")
    if fmt == "json":
        text = json.dumps(
            {
                "run_id": head.run_id,
                "candidate_id": head.best_id,
                "score": head.best_score,
                "candidate": dict(head.best_texts),
            },
            indent=2,
            ensure_ascii=False,
        )
    elif len(head.best_texts) == 1:
        text = next(iter(head.best_texts.values()))
    else:
        text = "\n\n".join(f"## {name}\n{body}" for name, body in head.best_texts.items())
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


@app.command(epilog="Example: gepetto compare runs/a runs/b")
def compare(
    run_a: Annotated[str, typer.Argument(help="The first run (A).")],
    run_b: Annotated[str, typer.Argument(help="The second run (B).")],
    as_json: JsonOpt = False,
) -> None:
    """Two runs side by side: status, best, budget, cost, and the diff of their best texts."""
    from gepetto.cli._text import comparison_text
    from gepetto.runview import compare_runs

    with _open(run_a, None) as a, _open(run_b, None) as b:
        comparison = compare_runs(a, b)
    if as_json:
        _print_json(comparison.to_json())
    else:
        sys.stdout.write(comparison_text(comparison))


@app.command(epilog="Example: gepetto report runs/a -o /tmp/report-a")
def report(
    run: RunArg,
    run_id: RunIdOpt = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="The folder to write (default: RUN/report)."),
    ] = None,
) -> None:
    """Write report.html (self-contained) and PNG plots of a run."""
    from gepetto.report import write_report

    with _open(run, run_id) as view:
        folder = output
        if folder is None:
            if view.store.run_dir is None:
                raise CommandError("this store has no run folder: pass --output FOLDER")
            folder = view.store.run_dir / "report"
        files = write_report(view, folder)
    for path in files:
        print(path)


@app.command(epilog="Example: gepetto dashboard runs/a runs/b --port 8765")
def dashboard(
    runs: Annotated[list[str], typer.Argument(help="Run folders, journal files or storage URLs.")],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="The address to bind.")] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open a browser tab.")] = False,
) -> None:
    """Serve the live dashboard of runs on 127.0.0.1 (read-only); prints its URL."""
    from gepetto.runview import open_store

    for source in runs:
        open_store(source).close()  # a path that is not a run: exit 2 before serving
    _check_port(host, port)
    try:  # imported by name: the dashboard is optional in a gepetto build
        web: Any = importlib.import_module("gepetto.dashboard")
    except ModuleNotFoundError as error:
        if error.name == "gepetto.dashboard":
            raise CommandError(
                "this gepetto has no dashboard (gepetto.dashboard is missing)",
                ExitCode.UNAVAILABLE,
            ) from None
        raise CommandError(
            f"the dashboard needs {error.name}: pip install 'gepetto[dashboard]'",
            ExitCode.UNAVAILABLE,
        ) from None
    try:
        web.serve(list(runs), host=host, port=port, open_browser=open_browser)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise _port_in_use(host, port) from None
        raise


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on, before the server starts."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise _port_in_use(host, port) from None
            raise CommandError(
                f"cannot listen on {host}:{port} ({error.strerror}): pass another --host"
            ) from None


def _port_in_use(host: str, port: int) -> CommandError:
    return CommandError(
        f"port {port} on {host} is in use: pass another --port (or stop what listens there)",
        ExitCode.UNAVAILABLE,
    )


@app.command(epilog="Examples: gepetto models; gepetto models --resolve openai/gpt-4.1-mini")
def models(
    resolve: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--resolve", help="Say what this model string resolves to."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The local models (installed or not) and server, or what a model string resolves to.
    Nothing is sent anywhere; keys are reported as set or not, never shown."""
    from gepetto.cli._models import local_models, resolve_model

    data = resolve_model(resolve) if resolve is not None else local_models()
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print("  " + "  ".join(f"{k}={v}" for k, v in item.items()))
        else:
            print(f"{key}: {value}")


def _exit_code_of(error: BaseException) -> ExitCode:
    """The exit code of an error a command raised (see :class:`ExitCode`)."""
    if isinstance(error, CommandError):
        return error.exit_code
    if isinstance(error, typer.Abort):
        return ExitCode.INTERRUPTED
    if isinstance(error, NotARun | ConfigError | TyperException):
        return ExitCode.BAD_INPUT
    if isinstance(error, RunInUse):
        return ExitCode.RUN_IN_USE
    if isinstance(error, StorageError):
        return ExitCode.STORE_ERROR
    return ExitCode.RUN_FAILED


def _one_line(error: BaseException) -> str:
    if isinstance(error, TyperException):  # typer's usage errors (its own click)
        text = " ".join(str(getattr(error, "format_message", error.__str__)()).split())
        context = getattr(error, "ctx", None)
        command = getattr(context, "command_path", None) or "gepetto"
        return f"{text} (see `{command} --help`)"
    text = " ".join(str(error).split())
    if isinstance(error, GepettoError | OSError):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


@contextmanager
def _errors_as_exit_codes(report: Callable[[str], None]) -> Iterator[list[int]]:
    code = [int(ExitCode.OK)]
    try:
        yield code
    except Exception as error:
        if os.environ.get("GEPETTO_TRACEBACK") == "1":
            traceback.print_exc()
        report(_one_line(error))
        code[0] = int(_exit_code_of(error))


def run_command(args: Sequence[str]) -> int:
    """Run the command line ``args``; every error becomes one line and an exit code."""
    command = typer.main.get_command(app)
    if not args:
        args = ["--help"]
    with _errors_as_exit_codes(
        lambda line: print(f"gepetto: error: {line}", file=sys.stderr)
    ) as code:
        result = command.main(list(args), prog_name="gepetto", standalone_mode=False)
        code[0] = int(result) if isinstance(result, int) else 0
    return code[0]
