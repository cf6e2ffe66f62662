"""Benchmark: what secret redaction costs a publish, per MB of content.

    uv run python bench/redaction.py [--mb 1] [--repeat 5]

Builds about `--mb` MB of turns for each of four realistic mixes (seeded, so runs compare):
- prose chat: user/assistant sentences, a tenth with CJK text, no code;
- code-heavy transcript: Python, TypeScript, shell and YAML snippets with the words a scanner
  trips on (token, key, password, secret in identifiers, type hints, os.environ lookups), git
  SHAs, UUIDs and sha256 digests, and a few real-looking secrets;
- tool-output/log-heavy JSON: tools_used with nested tool_data (HTTP responses, lockfile
  entries, log lines, file listings), a few secrets under secret-like keys and in headers;
- one 1 MB single line: a minified JSON document as one turn's content.

For each it times, in the same run, the baseline a publish already pays without redaction
(validating the raw turns as a PublishRequest, then `model_dump_json`) and `redact_turns` on
the validated turns: the least CPU time of `--repeat` runs (so other load on the machine
skews it less). Prints one table (MB/s, ms per MB, ratio to the baseline) and the one-off
cost of building the rule set (importing detect-secrets).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reflexio_mcp.core.models import PublishRequest
from reflexio_mcp.core.turn_secrets import redact_turns
from reflexio_mcp.secrets import prepare

WORDS = [
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "is",
    "it",
    "you",
    "that",
    "for",
    "on",
    "with",
    "as",
    "this",
    "be",
    "at",
    "by",
    "not",
    "are",
    "from",
    "or",
    "have",
    "order",
    "refund",
    "shipping",
    "invoice",
    "login",
    "account",
    "deploy",
    "server",
    "database",
    "query",
    "index",
    "latency",
    "timeout",
    "retry",
    "billing",
    "subscription",
    "upgrade",
    "bug",
    "crash",
    "memory",
    "profile",
    "agent",
    "customer",
    "ticket",
    "password",
    "token",
    "key",
    "secret",
    "reset",
    "settings",
    "manager",
    "keychain",
    "rotate",
    "expire",
    "session",
    "cache",
]
CJK = ["寿司", "東京", "会議", "請求書", "配送", "返金", "予約", "北京", "电脑", "서울", "회의"]


def fake(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def secrets_for(rng: random.Random) -> list[str]:
    """Fake, format-valid secrets, built from pieces so this file trips no secret scanner."""
    alnum = string.ascii_letters + string.digits
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b'{"sub":"42","iat":1700000000}').rstrip(b"=").decode()
    return [
        "AKIA" + fake(rng, string.ascii_uppercase + string.digits, 16),
        "gh" + "p_" + fake(rng, alnum, 36),
        "xox" + "b-" + fake(rng, string.digits, 12) + "-" + fake(rng, alnum, 24),
        "sk" + "-ant-api03-" + fake(rng, alnum, 93) + "AA",
        "sk" + "-proj-" + fake(rng, alnum, 48),
        f"{header}.{payload}." + fake(rng, alnum, 43),
    ]


def sentence(rng: random.Random) -> str:
    words = [WORDS[min(int(rng.paretovariate(1.2)) - 1, len(WORDS) - 1)] for _ in range(25)]
    text = " ".join(words).capitalize() + "."
    if rng.random() < 0.1:
        text += " " + "".join(rng.choice(CJK) + rng.choice("をにでの的了") for _ in range(6)) + "。"
    return text


def code_snippet(rng: random.Random) -> str:
    sha = fake(rng, "0123456789abcdef", 40)
    digest = fake(rng, "0123456789abcdef", 64)
    ident = uuid.UUID(int=rng.getrandbits(128))
    return rng.choice(
        [
            "```python\ndef load(api_key: str, token: str | None = None) -> Client:\n"
            '    key = os.environ["API_KEY"]\n    tokens = text.split()\n'
            "    for token in tokens:\n        cache_key = f'{user}:{token}'\n"
            "    return Client(api_key=api_key, timeout=30)\n```\n",
            "```ts\nconst secret = process.env.SECRET;\n"
            "export async function fetchUser(id: string) {\n"
            "  const res = await fetch(`/api/users/${id}`, { headers: { Authorization: "
            "`Bearer ${token}` } });\n  return res.json();\n}\n```\n",
            f"$ git log --oneline\n{sha[:7]} Fix token refresh\n$ git show {sha}\n"
            f"commit {sha}\nAuthor: Dev <dev@example.com>\n",
            "```yaml\nservices:\n  db:\n    image: postgres:16\n    environment:\n"
            "      POSTGRES_PASSWORD: ${DB_PASSWORD}\n      POSTGRES_USER: app\n```\n",
            f'"integrity": "sha256-{base64.b64encode(bytes.fromhex(digest)).decode()}",\n'
            f'"resolved": "https://registry.npmjs.org/pkg/-/pkg-1.2.3.tgz", "id": "{ident}"\n',
            "Reset your password in settings, then rotate the key and the token.\n",
            # Code with nothing a scanner looks for: most of a real transcript.
            "```sql\nSELECT o.id, o.total, c.email FROM orders o JOIN customers c ON c.id = "
            "o.customer_id\nWHERE o.created_at > now() - interval '7 days' ORDER BY o.total DESC;"
            "\n```\n",
            f"$ pytest -q\n....F...\nFAILED tests/test_orders.py::test_refund - AssertionError: "
            f"assert 200 == 404\n1 failed, 7 passed in 0.{rng.randint(10, 99)}s\n",
            "```tsx\nexport function OrderRow({ order }: { order: Order }) {\n  return (\n"
            '    <tr className="row">\n      <td>{order.id}</td>\n      <td>{formatMoney('
            "order.total)}</td>\n    </tr>\n  );\n}\n```\n",
            "```dockerfile\nFROM python:3.12-slim\nWORKDIR /app\nCOPY pyproject.toml uv.lock ./\n"
            'RUN pip install uv && uv sync --frozen\nCOPY . .\nCMD ["python", "-m", "app"]\n```\n',
            "Traceback (most recent call last):\n"
            f'  File "/app/orders.py", line {rng.randint(1, 400)}, in refund\n'
            '    raise ValueError(f"order {order_id} already refunded")\nValueError: '
            f"order {ident} already refunded\n",
            "```diff\n--- a/app/orders.py\n+++ b/app/orders.py\n@@ -40,7 +40,7 @@ def refund("
            "order_id: int):\n-    if order.status == 'paid':\n+    if order.status in ('paid', "
            "'shipped'):\n         issue_refund(order)\n```\n",
        ]
    )


def prose_turns(rng: random.Random, size: int) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    total = 0
    while total < size:
        content = " ".join(sentence(rng) for _ in range(rng.randint(5, 20)))
        turns.append({"role": "user" if len(turns) % 2 == 0 else "assistant", "content": content})
        total += len(content.encode())
    return turns


def code_turns(rng: random.Random, size: int) -> list[dict[str, Any]]:
    secrets = secrets_for(rng)
    turns: list[dict[str, Any]] = []
    total = 0
    while total < size:
        parts = [sentence(rng)] + [code_snippet(rng) for _ in range(rng.randint(2, 8))]
        if rng.random() < 0.05:
            parts.append(f"export OPENAI_API_KEY={rng.choice(secrets)}\n")
        content = "\n".join(parts)
        turns.append({"role": "assistant", "content": content})
        total += len(content.encode())
    return turns


def tool_turns(rng: random.Random, size: int) -> list[dict[str, Any]]:
    secrets = secrets_for(rng)
    turns: list[dict[str, Any]] = []
    total = 0
    while total < size:
        logs = [
            f"2026-11-23T14:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}Z INFO "
            f"request_id={uuid.UUID(int=rng.getrandbits(128))} path=/api/v1/orders "
            f"status=200 latency_ms={rng.randint(1, 900)} sha={fake(rng, '0123456789abcdef', 40)}"
            for _ in range(rng.randint(5, 30))
        ]
        data: dict[str, Any] = {
            "command": "kubectl logs deploy/api --tail=50",
            "output": "\n".join(logs),
            "response": {
                "headers": {"content-type": "application/json", "x-request-id": str(uuid.uuid4())},
                "body": {
                    "items": [
                        {
                            "id": i,
                            "name": rng.choice(WORDS),
                            "digest": fake(rng, "0123456789abcdef", 64),
                        }
                        for i in range(rng.randint(3, 20))
                    ],
                    "next_page_token": fake(rng, string.ascii_letters + string.digits, 24),
                },
            },
            "files": [f"src/{rng.choice(WORDS)}/{rng.choice(WORDS)}.py" for _ in range(10)],
        }
        if rng.random() < 0.05:
            data["env"] = {"GITHUB_TOKEN": rng.choice(secrets), "DB_PASSWORD": "Xk2#mP9qLw"}
        turn = {
            "role": "assistant",
            "content": sentence(rng),
            "tools_used": [{"tool_name": "bash", "tool_data": data, "status": "success"}],
        }
        turns.append(turn)
        total += len(json.dumps(turn).encode())
    return turns


def one_line_turns(rng: random.Random, size: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    text = ""
    while len(text) < size:
        records += [
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "sha": fake(rng, "0123456789abcdef", 40),
                "msg": sentence(rng),
                "url": f"https://example.com/{rng.choice(WORDS)}?page={rng.randint(1, 99)}",
                "token_count": rng.randint(1, 4000),
            }
            for _ in range(200)
        ]
        text = json.dumps(records, separators=(",", ":"), ensure_ascii=False)
    return [{"role": "tool", "content": text[: size - 1000] + "]"}]


def request(turns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "user_id": "bench-user",
        "session_id": "bench",
        "interaction_data_list": turns,
    }


def best(call: Callable[[], object], repeat: int) -> float:
    """The least CPU time of `repeat` calls: what the work costs, not what else the box runs."""
    timings: list[float] = []
    for _ in range(repeat):
        started = time.process_time()
        call()
        timings.append(time.process_time() - started)
    return min(timings)


def main(mb: float, repeat: int) -> None:
    started = time.perf_counter()
    prepare()
    build_ms = (time.perf_counter() - started) * 1000
    size = int(mb * 1_000_000)
    mixes = {
        "prose chat": prose_turns(random.Random(1), size),
        "code-heavy transcript": code_turns(random.Random(2), size),
        "tool-output/log JSON": tool_turns(random.Random(3), size),
        "1 MB single line": one_line_turns(random.Random(4), size),
    }
    print(
        f"redaction per MB of content, least CPU time of {repeat} runs; "
        f"rule set built once in {build_ms:.0f} ms"
    )
    print("| mix | MB | turns | found | baseline MB/s | redaction MB/s | redaction ms/MB | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, turns in mixes.items():
        raws = [request(turns[n : n + 1000]) for n in range(0, len(turns), 1000)]
        validated = [PublishRequest.model_validate(raw) for raw in raws]
        megabytes = sum(len(v.model_dump_json().encode()) for v in validated) / 1_000_000

        def baseline(raws: list[dict[str, Any]] = raws) -> None:
            for raw in raws:
                PublishRequest.model_validate(raw).model_dump_json()

        def redaction(validated: list[PublishRequest] = validated) -> int:
            return sum(redact_turns(v.interaction_data_list).total for v in validated)

        base_s = best(baseline, repeat)
        redact_s = best(redaction, repeat)
        print(
            f"| {name} | {megabytes:.2f} | {len(turns)} | {redaction()} | {megabytes / base_s:.0f} "
            f"| {megabytes / redact_s:.1f} | {redact_s * 1000 / megabytes:.1f} "
            f"| {redact_s / base_s:.0f}x |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Cost of secret redaction per MB of content")
    parser.add_argument("--mb", type=float, default=1.0, help="MB of content per mix")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    arguments = parser.parse_args()
    main(arguments.mb, arguments.repeat)
