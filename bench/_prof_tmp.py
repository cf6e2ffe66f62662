import sys, time, statistics, anyio, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from bench.bridge_overhead import seed_requests, queries, USER, TOP_K
from reflexio_mcp.backends.reflexio.api import ReflexioApi
from tests.support.reflexio_server import reflexio_server

async def main(url: str, work: Path, prof: str) -> None:
    api = ReflexioApi(url, api_key=None, timeout=30, connect_timeout=5, max_retries=0)
    async with api:
        for r in seed_requests():
            await api.publish(r, r.checked_body(), wait_for_response=False) if False else None
    env = {"REFLEXIO_URL": url, "REFLEXIO_MCP_DATA_DIR": str(work / "d")}
    args = ["-m", "cProfile", "-o", prof, "-m", "reflexio_mcp"] if prof else ["-m", "reflexio_mcp"]
    async with Client(stdio_client(StdioServerParameters(command=sys.executable, args=args, env=env))) as c:
        for r in seed_requests():
            await c.call_tool("publish_interaction", {"user_id": USER, "session_id": "bench", "interactions": [t.model_dump(exclude_none=True) for t in r.interaction_data_list]})
        texts = queries(997)
        for t in texts[:100]:
            await c.call_tool("search_interactions", {"user_id": USER, "query": t, "top_k": TOP_K})
        times = []
        for t in texts[:int(sys.argv[2])]:
            s = time.perf_counter()
            await c.call_tool("search_interactions", {"user_id": USER, "query": t, "top_k": TOP_K})
            times.append((time.perf_counter() - s) * 1000)
        times.sort()
        print(f"p50 {statistics.median(times):.2f} ms p99 {times[int(len(times)*0.99)]:.2f} ms")

with tempfile.TemporaryDirectory() as w:
    with reflexio_server(Path(w)) as rx:
        anyio.run(main, rx.url, Path(w), sys.argv[1])
