"""What streaming costs a short call: the same request streamed and not, interleaved.

Two servers:

- *fault server* (``tests/lm/fault_server.py`` on 127.0.0.1, a fixed 20-word reply in
  4-character pieces, no model): the client's own overhead, SDK and HTTP included;
- *local model* (``--local``: the real llama-server with the 0.5B task model, temperature 0,
  ``max_tokens`` 16, ``cache_prompt`` off): what a short task call costs end to end.

Each variant makes ``--repeat`` calls (``--local-repeat`` for the model), the variants
interleaved so that machine load hits them alike, after one unmeasured warm-up call each;
reported: median and 90th percentile wall time of one call.

    python bench/streaming.py [--repeat N] [--local] [--local-repeat N] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.lm.fault_server

from tests.lm.fault_server import FaultServer, streamed

from _harness import provenance, replace_section
from gepetto.lm.openai_client import OpenAIClient

START, END = "<!-- streaming:start -->", "<!-- streaming:end -->"
REPLY = " ".join(f"word{i}" for i in range(20))
INTRO = (
    "The same short request, whole and streamed, interleaved (see the script's docstring). "
    "Streaming costs a fixed amount per chunk (one HTTP chunk, one SDK object each): the "
    "fault server's 35-chunk reply takes 20 to 30 ms more streamed. Against the model the "
    "difference is lost in the model's own time (and in the noise of a loaded 2-core "
    "machine). Hence the default `stream=None`: a run's reflections stream (long replies, "
    "read live), its many short task calls go whole.\n\n"
)


async def timed(client: OpenAIClient, prompt: str) -> float:
    started = time.perf_counter()
    await client.acomplete(prompt)
    return time.perf_counter() - started


async def measure(
    clients: dict[str, OpenAIClient], repeat: int, prompt: str
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():
        await client.acomplete(prompt)  # warm-up: connection, SDK imports
    for _ in range(repeat):
        for name, client in clients.items():
            times[name].append(await timed(client, prompt))
    for client in clients.values():
        await client.aclose()
    return times


def fault_server_times(repeat: int) -> dict[str, list[float]]:
    with FaultServer() as server:
        server.play(*(streamed(REPLY, chunk_chars=4) for _ in range(4 * repeat + 8)))

        def client(stream: bool) -> OpenAIClient:
            return OpenAIClient("m", base_url=server.openai_base_url, api_key="k", stream=stream)

        return asyncio.run(
            measure({"whole": client(False), "streamed": client(True)}, repeat, "hi")
        )


def local_times(repeat: int) -> dict[str, list[float]]:
    from gepetto.lm.local import LocalServer

    with LocalServer("qwen2.5-coder-0.5b", parallel=1) as server:

        def client(stream: bool) -> OpenAIClient:
            return OpenAIClient(
                "qwen2.5-coder-0.5b",
                base_url=server.base_url,
                provider_name="local",
                temperature=0,
                max_tokens=16,
                extra_body={"cache_prompt": False},
                stream=stream,
            )

        prompt = "Answer with one word: the colour of the sky?"
        return asyncio.run(
            measure({"whole": client(False), "streamed": client(True)}, repeat, prompt)
        )


def table(title: str, times: dict[str, list[float]], unit: float, unit_name: str) -> str:
    lines = [f"**{title}**\n", f"| variant | calls | median ({unit_name}) | p90 ({unit_name}) |"]
    lines.append("|---|---|---|---|")
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]
        median = statistics.median(values) * unit
        lines.append(f"| {name} | {len(values)} | {median:.2f} | {p90 * unit:.2f} |")
    return "\n".join(lines) + "\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--local", action="store_true")
    parser.add_argument("--local-repeat", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    body = table("fault server (client overhead)", fault_server_times(args.repeat), 1000, "ms")
    if args.local:
        body += table("local 0.5B model, 16 tokens", local_times(args.local_repeat), 1, "s")
    print(body)
    if args.write_docs:
        command = "python bench/streaming.py " + " ".join(sys.argv[1:])
        intro = "## Streaming a short call\n\n" + INTRO
        section = f"{START}\n{intro}{provenance(command.strip(), load)}{body}{END}"
        replace_section(section, START, END)


if __name__ == "__main__":
    main()
