"""Every target of the bridge's performance in one run: per-call overhead, cold start and
memory (bench/bridge_overhead.py), then the embedded store grown to 1M interactions
(bench/store_scale.py). Both print their table; docs/performance.md keeps the latest.

    uv run python bench/targets.py [--calls 1000] [--sizes 10000,100000,210000,1000000]

About 10 minutes on a 2-core machine, most of it seeding the million interactions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bridge_overhead, store_scale

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="reflexio-mcp's performance targets")
    parser.add_argument("--calls", type=int, default=1000, help="P1: timed calls per path")
    parser.add_argument("--launches", type=int, default=7, help="P2/P5: timed launches each")
    parser.add_argument("--memory-calls", type=int, default=10_000, help="P5: searches")
    parser.add_argument(
        "--sizes",
        type=store_scale.size_list,
        default=store_scale.size_list("10000,100000,210000,1000000"),
        help="store sizes to measure",
    )
    parser.add_argument("--queries", type=int, default=200, help="searches of each kind")
    arguments = parser.parse_args()
    bridge_overhead.main(arguments)
    print()
    anyio.run(store_scale.main, arguments.sizes, arguments.queries)
