"""Benchmark: `reflexio-mcp import` over a folder of Claude Code sessions, and its re-run.

    uv run python bench/import_sessions.py [--sessions 1000] [--gigabytes G] [--out FOLDER]
                                           [--profile FILE]

Writes a folder of sessions in the format Claude Code 2.1.197 writes (tests/support/
transcripts.py): each 5 to 40 exchanges (prompts of 50 to 500 characters, answers of 200 to
3,000), a queue-operation, attachment and last-prompt line around each prompt, tool calls with
their tool_result lines, and now and then a damaged line (cut short, or not text). With
--gigabytes, sessions are written until the folder holds about G GB (10^9 bytes), their tool
results padded (1 KB to 40 KB, one in 500 of 1 to 4 MB: files read whole, long command output)
and a fifth of their answers long (3,000 to 20,000 characters); --sessions is then ignored.
File times are set an hour back: no session is still running.

Then runs the real CLI twice, `python -m reflexio_mcp import FOLDER` in a subprocess on the
embedded store in a fresh data folder (REFLEXIO_URL unset): the first import, and the re-run,
which finds everything stored. Prints one table: per run, the sessions and MB read, the
sessions its summary counts, the turns
stored and already stored (and the turns the store holds after it, counted in its file), wall
time and CPU time (user + system: on a busy machine the wall time grows, the CPU time much
less), turns per second of wall time (stored and already stored), and the import's peak RSS
(CPU and RSS measured by /usr/bin/time). --profile FILE runs the first import under cProfile
instead (its output in FILE; the times then include the profiler's cost; it sees only the main
thread, and the store's writes and the redaction run in worker threads). The folder is a
temporary one, deleted at the end, unless --out names one (kept).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reflexio_mcp.backends.embedded.schema import FILE_NAME
from tests.support.transcripts import Transcript

WORD_TEXT = (
    "invoice order customer refund shipping warehouse schema migration index query cache "
    "latency deploy rollback branch merge review test fixture mock timeout retry queue worker "
    "config secretless token parser lexer module package import export function class method "
    "variable constant loop error exception stack trace log metric alert dashboard service "
    "endpoint route handler middleware session cookie header payload request response status "
    "the a of to in and is it that for on with as this be by are was from at or an"
)
WORDS = WORD_TEXT.split()
CORPUS_CHARS = 8 * 2**20
DAMAGED_EVERY = 20
"""About one session in this many has a damaged line."""
DAMAGED = (b'{"type":"assistant","message":{"content":[{"ty\n', b"\x00\xff\xfe not text\n")
"""A line cut short (a crash mid-write) and one that is not UTF-8."""
GIGABYTE = 10**9
TIME = "/usr/bin/time"
"""Measures the import's peak RSS. Not this process's wait4: a child started by vfork (as
subprocess does) inherits, at exec, the peak RSS of the parent that wrote the sessions."""
TOOLS = ("Read", "Bash", "Grep", "Edit", "Glob")
SUMMARY = re.compile(
    r"imported (?P<files>[\d,]+) file\(s\), (?P<sessions>[\d,]+) session\(s\): "
    r"(?P<stored>[\d,]+) turn\(s\) stored, (?P<already>[\d,]+) already stored, "
    r"(?P<skipped>[\d,]+) skipped"
)


class Text:
    """Random words, cut from one long string made once (fast enough for gigabytes)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._corpus = " ".join(rng.choices(WORDS, k=CORPUS_CHARS // 5))

    def of(self, chars: int) -> str:
        start = self._rng.randrange(0, len(self._corpus) - chars)
        return self._corpus[start : start + chars]


@dataclass
class Folder:
    sessions: int = 0
    exchanges: int = 0
    damaged: int = 0
    bytes: int = 0


def session(rng: random.Random, text: Text, number: int, *, padded: bool) -> Transcript:
    transcript = Transcript(cwd=f"/home/dev/projects/app-{number % 25}")
    for turn in range(rng.randint(5, 40)):
        prompt = f"[s{number} e{turn}] " + text.of(rng.randint(50, 500))
        long_answer = padded and rng.random() < 0.2
        answer = text.of(rng.randint(3000, 20000) if long_answer else rng.randint(200, 3000))
        transcript.queue(prompt).prompt(prompt).attachment()
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            tool = rng.choice(TOOLS)
            transcript.tool(tool, {"target": text.of(40)}, text.of(result_chars(rng, padded)))
        transcript.text(answer).last_prompt()
    return transcript


def result_chars(rng: random.Random, padded: bool) -> int:
    if not padded:
        return rng.randint(50, 2000)
    if rng.random() < 0.002:
        return rng.randint(1, 4) * 2**20
    return rng.randint(1_000, 40_000)


def write_session(transcript: Transcript, folder: Path, rng: random.Random) -> tuple[int, bool]:
    """Written as Claude Code names it; bytes written and whether a line was damaged."""
    lines = [json.dumps(line).encode() + b"\n" for line in transcript.lines]
    damaged = rng.randrange(DAMAGED_EVERY) == 0
    if damaged:
        lines.insert(rng.randrange(1, len(lines)), rng.choice(DAMAGED))
    path = folder / f"{transcript.session}.jsonl"
    data = b"".join(lines)
    path.write_bytes(data)
    past = time.time() - 3600
    os.utime(path, (past, past))
    return len(data), damaged


def generate(out: Path, sessions: int, gigabytes: float | None, seed: int) -> Folder:
    rng = random.Random(seed)
    text = Text(rng)
    folder = Folder()
    goal = None if gigabytes is None else gigabytes * GIGABYTE
    while (folder.bytes < goal) if goal is not None else (folder.sessions < sessions):
        transcript = session(rng, text, folder.sessions, padded=goal is not None)
        project = out / transcript.cwd.strip("/").replace("/", "-")
        project.mkdir(parents=True, exist_ok=True)
        written, damaged = write_session(transcript, project, rng)
        folder.sessions += 1
        folder.exchanges += sum(1 for line in transcript.lines if line["type"] == "queue-operation")
        folder.damaged += damaged
        folder.bytes += written
    return folder


@dataclass
class Run:
    name: str
    summary: dict[str, int]
    held: int
    wall: float
    cpu: float
    rss_mib: float


def import_once(name: str, folder: Path, data: Path, profile: Path | None) -> Run:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REFLEXIO")}
    env.update(REFLEXIO_MCP_DATA_DIR=str(data), REFLEXIO_USER_ID="bench-user")
    runner = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    command = [sys.executable, *runner, "-m", "reflexio_mcp", "import", str(folder)]
    with tempfile.TemporaryDirectory() as work:
        rss = Path(work) / "rss"
        started = time.perf_counter()
        done = subprocess.run(
            [TIME, "-f", "%M %U %S", "-o", str(rss), *command],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        kib, user, system = rss.read_text().split()[-3:]
    found = SUMMARY.search(done.stdout)
    if done.returncode != 0 or found is None:
        sys.exit(f"{name}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    summary = {key: int(value.replace(",", "")) for key, value in found.groupdict().items()}
    with closing(sqlite3.connect(f"file:{data / FILE_NAME}?mode=ro", uri=True)) as db:
        (held,) = db.execute("SELECT count(*) FROM interactions").fetchone()
    return Run(name, summary, held, wall, float(user) + float(system), int(kib) / 1024)


def table(folder: Folder, runs: list[Run]) -> str:
    header = ["run", "sessions", "summary sessions", "files MB", "turns stored", "already stored",
              "skipped", "store holds", "wall s", "CPU s", "turns/s", "peak RSS MiB"]  # fmt: skip
    rows = [header]
    for run in runs:
        handled = run.summary["stored"] + run.summary["already"]
        rows.append(
            [
                run.name,
                f"{folder.sessions:,}",
                f"{run.summary['sessions']:,}",
                f"{folder.bytes / 10**6:,.0f}",
                f"{run.summary['stored']:,}",
                f"{run.summary['already']:,}",
                f"{run.summary['skipped']:,}",
                f"{run.held:,}",
                f"{run.wall:.1f}",
                f"{run.cpu:.1f}",
                f"{handled / run.wall:,.0f}",
                f"{run.rss_mib:.0f}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def measure(out: Path, flags: argparse.Namespace) -> None:
    started = time.perf_counter()
    folder = generate(out / "sessions", flags.sessions, flags.gigabytes, flags.seed)
    print(
        f"wrote {folder.sessions:,} sessions, {folder.exchanges:,} exchanges "
        f"({2 * folder.exchanges:,} turns expected), {folder.damaged} damaged line(s), "
        f"{folder.bytes / 10**6:,.0f} MB in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    data = out / "data"
    profile: Path | None = flags.profile
    runs = [
        import_once("first import", out / "sessions", data, profile),
        import_once("re-run", out / "sessions", data, None),
    ]
    print(table(folder, runs))
    expected = 2 * folder.exchanges
    for run in runs:
        if run.held != expected:
            print(f"{run.name}: the store holds {run.held:,} turns, {expected:,} expected")


def main() -> None:
    parser = argparse.ArgumentParser(description="reflexio-mcp import over generated sessions")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--gigabytes", type=float, help="write sessions until about G GB")
    parser.add_argument("--out", type=Path, help="the folder to write in (kept); a temp one")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, help="cProfile output of the first import")
    flags = parser.parse_args()
    if flags.out is not None:
        flags.out.mkdir(parents=True, exist_ok=True)
        if any(flags.out.iterdir()):
            sys.exit(f"--out {flags.out}: not empty; name an empty or new folder")
        measure(flags.out, flags)
        return
    work = Path(tempfile.mkdtemp(prefix="import-bench-"))
    try:
        measure(work, flags)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
