"""Benchmark: cold start and memory of this checkout against another, in one run.

    git worktree add /tmp/old <commit> && (cd /tmp/old && uv sync --locked --python python3)
    uv run python bench/cold_start_versus.py /tmp/old [--launches 7]

Issue 18's target: cold start and idle RSS within 5 % of the commit before meaning-based
search. Each tree runs `python -P -m reflexio_mcp` from its own .venv (-P: the code is the
tree's own install, whatever the working folder) on an embedded store in its own data folder,
seeded by that tree's own code with bridge_overhead's 20 turns of one user. Launches
alternate between the trees, the order swapped each round, after one untimed warm-up launch
each (the disk cache; the newer tree's background index embeds the 20 turns then, so later
launches find nothing to embed). Measured as bridge_overhead's P2 and P5 measure them, with its
functions (bare JSON-RPC lines, the server's own VmRSS): spawn to the tools/list answer; RSS
once idle after it; then one search_interactions (its time: the model loads during it on a
tree that has one) and RSS once idle after it. Prints one table and the two ratios, met or
missed. Stops every process it starts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bridge_overhead import raw_server, wait_idle
from bench.http_search import TOP_K, USER

TARGET_RATIO = 1.05
IDLE_LIMIT_SECONDS = 30.0
"""How long a server may take to fall idle after its first search (a model loads then)."""
QUERY = "which database did we pick for the project"
SEED = (
    "import sys, anyio; from pathlib import Path; sys.path.insert(0, '.'); "
    "from bench.bridge_overhead import seed_embedded; anyio.run(seed_embedded, Path(sys.argv[1]))"
)


@dataclass
class Tree:
    name: str
    root: Path
    data: Path
    starts: list[float] = field(default_factory=list[float])
    idle_kib: list[int] = field(default_factory=list[int])
    search_ms: list[float] = field(default_factory=list[float])
    searched_kib: list[int] = field(default_factory=list[int])

    @property
    def python(self) -> Path:
        return self.root / ".venv/bin/python"

    def commit(self) -> str:
        return subprocess.run(
            ["git", "-C", str(self.root), "log", "-1", "--format=%h %s"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()[:70]  # fmt: skip


def launch(tree: Tree, work: Path, *, timed: bool) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work / "home"),
        "REFLEXIO_MCP_DATA_DIR": str(tree.data),
    }
    command = [str(tree.python), "-P", "-m", "reflexio_mcp"]
    with raw_server(command, env, work / f"{tree.name}.log") as server:
        server.handshake()
        server.request("tools/list", {})
        started = time.perf_counter() - server.spawned
        wait_idle(server.pid)
        idle = server.rss_kib()
        before = time.perf_counter()
        result = server.call_tool(
            "search_interactions", {"user_id": USER, "query": QUERY, "top_k": TOP_K}
        )
        search_ms = (time.perf_counter() - before) * 1000
        if result.get("isError"):
            raise RuntimeError(f"{tree.name}: the search failed: {result}")
        wait_idle(server.pid, IDLE_LIMIT_SECONDS)
        searched = server.rss_kib()
    if timed:
        tree.starts.append(started)
        tree.idle_kib.append(idle)
        tree.search_ms.append(search_ms)
        tree.searched_kib.append(searched)


def spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    low, mid, high = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"{mid:,.1f} ({low:,.1f}-{high:,.1f}) {unit}"


def main(old_root: Path, launches: int) -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="reflexio-bench-") as work_dir:
        work = Path(work_dir)
        trees = [
            Tree("old", old_root.resolve(), work / "old-data"),
            Tree("new", Path(__file__).resolve().parent.parent, work / "new-data"),
        ]
        for tree in trees:
            subprocess.run(
                [str(tree.python), "-P", "-c", SEED, str(tree.data)], cwd=tree.root, check=True
            )
        for round_ in range(launches + 1):
            for tree in trees if round_ % 2 else trees[::-1]:
                launch(tree, work, timed=round_ > 0)
    old, new = trees
    print(
        f"{launches} launches each, alternating (order swapped each round), after a warm-up "
        f"each; embedded store with 20 turns of one user; median (min-max); "
        f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at start"
    )
    print(f"old: {old.root} ({old.commit()})\nnew: {new.root} ({new.commit()})\n")
    print("| metric | old | new | new / old | target |\n|---|---|---|---|---|")
    rows = [
        ("P2 cold start, spawn to tools/list", "starts", "ms", 1000.0, True),
        ("P5 idle RSS after tools/list", "idle_kib", "MiB", 1 / 1024, True),
        ("first search_interactions (the model loads in it)", "search_ms", "ms", 1.0, False),
        ("RSS once idle after the first search", "searched_kib", "MiB", 1 / 1024, False),
    ]
    for label, name, unit, scale, targeted in rows:
        before, after = getattr(old, name), getattr(new, name)
        ratio = statistics.median(after) / statistics.median(before)
        target = (
            f"<= {TARGET_RATIO:g}: {'met' if ratio <= TARGET_RATIO else 'MISSED'}"
            if targeted
            else "-"
        )
        print(
            f"| {label} | {spread(before, unit, scale)} | {spread(after, unit, scale)} "
            f"| {ratio:.3f} | {target} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Cold start and memory: this tree vs another")
    parser.add_argument("old", type=Path, help="the other tree (a git worktree, uv synced)")
    parser.add_argument("--launches", type=int, default=7, help="timed launches of each")
    arguments = parser.parse_args()
    main(arguments.old, arguments.launches)
