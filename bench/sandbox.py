"""Start-up cost of a sandboxed evaluation over a plain subprocess running the same code.

Each variant runs ``print(sum(range(1000)))`` (output checked) ``--repeat`` times, the
variants interleaved so that machine load hits them alike, after two unmeasured warm-up runs
each; reported: median and 90th percentile of the wall time of one call, and the median's
excess over the plain subprocess. Variants:

- *plain*: ``subprocess.run([sys.executable, "-c", CODE], capture_output=True)``;
- *run_python*: ``gepetto.sandbox.run_python(CODE)`` (network, PID and mount namespaces, own
  user id, limits, fresh working directory);
- *run_python, allow_network*: the same without the network namespace;
- *run_command*: ``run_command([sys.executable, "-c", CODE])`` (a second interpreter start:
  the launcher ``exec``s the command).

All variants run in this one process (the sandbox has no state carried between calls).

    python bench/sandbox.py [--repeat N] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from _harness import provenance, replace_section
from gepetto.sandbox import run_command, run_python

CODE = "print(sum(range(1000)))"
EXPECTED = "499500\n"
TARGET_MS = 50.0
START, END = "<!-- sandbox:start -->", "<!-- sandbox:end -->"


def plain() -> str:
    done = subprocess.run([sys.executable, "-c", CODE], check=True, capture_output=True, text=True)
    return done.stdout


VARIANTS: dict[str, Callable[[], str]] = {
    "plain subprocess": plain,
    "run_python": lambda: run_python(CODE).stdout,
    "run_python, allow_network=True": lambda: run_python(CODE, allow_network=True).stdout,
    "run_command (python -c)": lambda: run_command([sys.executable, "-c", CODE]).stdout,
}


def measure(repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for name, call in VARIANTS.items():
        for _ in range(2):
            if call() != EXPECTED:
                raise SystemExit(f"{name}: wrong output")
    for _ in range(repeat):
        for name, call in VARIANTS.items():
            started = time.perf_counter()
            output = call()
            times[name].append((time.perf_counter() - started) * 1000)
            if output != EXPECTED:
                raise SystemExit(f"{name}: wrong output {output!r}")
    return times


def table(times: dict[str, list[float]]) -> str:
    base = statistics.median(times["plain subprocess"])
    lines = [
        "| variant | median ms | p90 ms | excess over plain, ms |",
        "|---|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        excess = "" if name == "plain subprocess" else f"{median - base:+.1f}"
        lines.append(f"| {name} | {median:.1f} | {p90:.1f} | {excess} |")
    worst = max(
        statistics.median(times[n]) - base for n in ("run_python", "run_command (python -c)")
    )
    verdict = "within" if worst <= TARGET_MS else "over"
    lines.append("")
    lines.append(
        f"Target: at most {TARGET_MS:.0f} ms of start-up over the plain subprocess; measured "
        f"at most {worst:.1f} ms (median): {verdict} target."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="measured calls per variant")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    body = table(measure(args.repeat))
    print(body)
    if args.write_docs:
        options = f" --repeat {args.repeat}" if args.repeat != 40 else ""
        command = f".venv/bin/python bench/sandbox.py{options} --write-docs"
        intro = (
            "## Sandbox start-up\n\n"
            "What running a candidate in `gepetto.sandbox` costs over running the same code in "
            "a plain subprocess (`bench/sandbox.py`: `print(sum(range(1000)))`, interleaved "
            f"calls, {args.repeat} per variant, as root, where the sandbox uses network, PID and "
            "mount namespaces and a user id of its own). *run_command* starts a second "
            "interpreter (the command's own), so its excess is the launcher's start; other "
            "work ran beside the measurement (see the load average), which inflates every "
            "row.\n\n"
        )
        section = f"{START}\n{intro}{provenance(command, load)}{body}{END}"
        replace_section(section, START, END)
        print("updated docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
