"""Count the CPU instructions each client spends on one request.

Throughput on a shared machine moves by more than the few percent an auth
layer costs; instruction counts do not. This runs every client of
``bench.py`` under valgrind's callgrind twice, once with a few requests and
once with many more, and divides the difference by the extra requests: what
one steady-state request costs the client process, start-up and warm-up
taken out. The servers are those of ``bench.py``, in a second process that
valgrind does not see.

    python benchmarks/instructions.py                 # needs valgrind
    python benchmarks/instructions.py --markdown benchmarks/INSTRUCTIONS.md
    python benchmarks/instructions.py --clients "gcloud-aio-auth Token + session"

Counts still move by a few hundred instructions between runs (how many
responses each turn of the event loop finds ready depends on the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bench

_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


async def _child(name: str, requests: int, setup: dict[str, Any]) -> None:
    """Run inside valgrind: warm one client up, then send ``requests``."""
    clients = await bench._make_clients(setup)
    try:
        client = next(c for c in clients if c.name == name)
        if client.fetch is None:
            raise SystemExit(f"{name} could not run: {client.error}")
        await bench._round(client.fetch, setup["api_url"], 200, 64)
        if requests:
            await bench._round(client.fetch, setup["api_url"], requests, 64)
    finally:
        for other in clients:
            if other.close is not None:
                await other.close()


def _count(name: str, requests: int, setup_path: str, out_dir: str) -> int:
    stem = re.sub(r"\W+", "_", name)
    out = os.path.join(out_dir, f"{stem}.{requests}.out")
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        name,
        "--requests",
        str(requests),
        "--setup",
        setup_path,
    ]
    # A fixed hash seed: the same dict layouts, run after run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip().splitlines()[-1]}")
    with open(out) as counts:
        match = _TOTALS.search(counts.read())
    if match is None:
        raise RuntimeError(f"{name}: no instruction total in {out}")
    return int(match.group(1))


def _per_request(name: str, requests: int, setup_path: str, out_dir: str) -> float:
    base = _count(name, 0, setup_path, out_dir)
    more = _count(name, requests, setup_path, out_dir)
    return (more - base) / requests


def main(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing to count.", file=sys.stderr)
        return 1
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    server = context.Process(target=bench._server_main, args=(queue,), daemon=True)
    server.start()
    try:
        setup = queue.get(timeout=60)
        with tempfile.TemporaryDirectory() as out_dir:
            setup_path = os.path.join(out_dir, "setup.json")
            with open(setup_path, "w") as sink:
                json.dump(setup, sink)
            names = args.clients or DEFAULT_CLIENTS
            workers = args.jobs or os.cpu_count() or 1
            with ThreadPoolExecutor(max_workers=workers) as pool:
                counts = list(
                    pool.map(
                        lambda name: _per_request(
                            name, args.requests, setup_path, out_dir
                        ),
                        names,
                    )
                )
    finally:
        server.terminate()

    raw = counts[0]
    command = shlex.join(["python", "benchmarks/instructions.py", *sys.argv[1:]])
    report = [
        f"Machine: {bench._machine()}. Command: `{command.strip()}`.",
        "",
        f"Instructions per request (client process, valgrind callgrind): "
        f"{args.requests} GETs at concurrency 64 after 200 to warm up, minus a "
        "run with the warm-up alone.",
        "",
        "| client | instructions / request | added to raw | ratio to raw |",
        "| --- | --- | --- | --- |",
    ]
    for name, count in zip(names, counts, strict=True):
        report.append(
            f"| {name} | {count:,.0f} | {count - raw:+,.0f} | {raw / count:.3f} |"
        )
    print("\n".join(report))
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write("# Instructions per request\n\n" + "\n".join(report) + "\n")
    return 0


# The limit first: every other row is compared with it.
DEFAULT_CLIENTS = [
    "raw aiohttp (fixed header)",
    "raw + a do-nothing middleware",
    "raw + a middleware setting a fixed header",
    "AuthorizedSession, async SA",
    "AuthorizedSession, sync SA",
    "AuthMiddleware, async SA",
]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--clients", nargs="*", help="client names as bench.py prints them"
    )
    parser.add_argument("--jobs", type=int, help="valgrind runs at a time")
    parser.add_argument("--markdown", help="write the report here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        warnings.simplefilter("ignore")  # a peer's deprecation is not our count
        with open(arguments.setup) as source:
            setup = json.load(source)
        asyncio.run(_child(arguments.child, arguments.requests, setup))
        sys.exit(0)
    sys.exit(main(arguments))
