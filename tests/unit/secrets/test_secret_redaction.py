"""Secret redaction of publishes: what is caught, what is kept byte for byte, and how.

Every secret here is fake but shaped like the real thing, and built from pieces so that this
file itself trips no secret scanner (GitHub push protection, detect-secrets, gitleaks).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reflexio_mcp.core.models import InteractionData, PublishRequest, ToolUsed
from reflexio_mcp.core.turn_secrets import redact_turns
from reflexio_mcp.secrets import (
    KINDS,
    SHORT_MARKER,
    Finding,
    find_secrets,
    find_secrets_in,
    key_kind,
    marker,
    prepare,
    redact_text,
)


def joined(*parts: str, length: int | None = None) -> str:
    value = "".join(parts)
    assert length is None or len(value) == length, (len(value), length)
    return value


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


ALNUM36 = "Xk9Qm2Lr7Tz4Wv8Np3Hs6Jd1Fb5Gc0Ya2Eu7"
HEX32 = "9f86d081884c7d659a2feaa0c55ad015"
AWS_ID = joined("AKIA", "J7QX2V9ZB3LKTM4P", length=20)
AWS_SECRET = joined("wJalr", "XUtnFEMI/K7MDENG/bPxRfiCY7k2LmQ9zTq", length=40)
GITHUB = joined("gh", "p_", ALNUM36, length=40)
GITHUB_PAT = joined(
    "github",
    "_pat_",
    "11ABCDE7Y0",
    "qR8sT1vW4yZ7bC0eF3hI6k",
    "_",
    "L9nO2qR5tU8wX1zA4cD7fG0iJ3lM6oP9rS2uV5xY8aB1dE4gH7jK0mN3pQ",
)
GITLAB = joined("gl", "pat-", "xY7kP2mQ9vR4tW8zL1nB", length=26)
SLACK = joined("xo", "xb-", "123456789012-1234567890123-", "AbCdEfGhIjKlMnOpQrStUvWx")
SLACK_HOOK = joined(
    "https://hooks.slack.com/services/", "T0A1B2C3D", "/B0A1B2C3D/", "aB3dE6gH9jK2mN5pQ8sT1vW4"
)
STRIPE = joined("sk", "_live_", "51Hx8aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6kL9nO2qR5tU")
STRIPE_TEST = joined("rk", "_test_", "51Hx8aB3dE6gH9jK2mN5pQ8s")
OPENAI_PROJECT = joined(
    "sk",
    "-proj-",
    "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "T3Blbk",
    "FJ",
    "AB7CD0EF3GH6IJ9KL2MN5-OP8qR_1s",
)
OPENAI_LEGACY = joined(
    "sk", "-", "aB3dE6gH9jK2mN5pQ8sT", "T3Blbk", "FJ", "wX4yZ7bC0eF3hI6kL9nO", length=51
)
ANTHROPIC = joined(
    "sk",
    "-ant-api03-",
    "Xy9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX7yZ6aB5cD4eF3gH2iJ1kL0mN9oP8qR7sT6uV5wX4yZ3aB2cD1eF0gH-AA",
)
GOOGLE = joined("AI", "za", "SyB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h", length=39)
HUGGINGFACE = joined("hf", "_", "aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH", length=37)
JWT = ".".join(
    (
        b64url({"alg": "HS256", "typ": "JWT"}),
        b64url({"sub": "1234567890", "name": "Ada", "iat": 1516239022}),
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    )
)
SENDGRID = joined(
    "SG",
    ".",
    "aB3dE6gH9jK2mN5pQ8sT1v",
    ".",
    "wX4yZ7bC0eF3hI6kL9nO2qR5tU8wX1zA4cD7fG0iJ3l",
    length=69,
)
PYPI = joined(
    "pypi-",
    "AgEIcHlwaS5vcmc",
    "CJDk3ZjM4NzQtYmE2Ny00ZWQ2LWE1ZjctNjI4ZDk0YzE4ZmIzAAIqWzMsIjk0YTdhYjQ1LWQ5NDEtNGEz",
)
NPM = joined("np", "m_", ALNUM36, length=40)
NPM_LEGACY = "3f2a9c1e-4b5d-6f7a-8b9c-0d1e2f3a4b5c"
TWILIO = joined("A", "C", HEX32, length=34)
MAILCHIMP = joined(HEX32, "-us", "14")
DISCORD = joined("MTk4NjIyNDgzNDcxOTI1MjQ4", ".", "Cl2FMQ", ".", "ZnCjm1XVW7vRze4b7Cq4se7kKWs")
TELEGRAM = joined("123456789", ":", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9", length=45)
AZURE = joined(
    "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6kL9nO2qR5tU8wX1zA4cD7fG0iJ3lM6oP9rS2uV5xY8aB1dE4gH",
    "==",
    length=88,
)
SQUARE = joined("sq0", "csp-", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6kL9nO2q", length=50)
S3_SIGNATURE = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
BEARER = "abc123DEF456ghi789JKL012mno345"
BASIC = base64.b64encode(b"alice:wonder-land-42").decode()
PEM_BODY = (
    "MIIEpAIBAAKCAQEA1c7xQ3nVw8hR2kZ9pL4mT6yB0eF3hI6kL9nO2qR5tU8wX1zA\n"
    "4cD7fG0iJ3lM6oP9rS2uV5xY8aB1dE4gH7jK0mN3pQ6sT9vW2yZ5bC8eF1hI4kL7\n"
    "nO0qR3tU6wX9zA2cD5fG8iJ1lM4oP7rS0uV3xY6aB9dE2gH5jK8mN1pQ4sT7vW0y\n"
)
PEM = joined("-----BEGIN ", "RSA PRIVATE KEY-----\n", PEM_BODY, "-----END RSA PRIVATE KEY-----")
OPENSSH = joined(
    "-----BEGIN ",
    "OPENSSH PRIVATE KEY-----\n",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n",
    "QyNTUxOQAAACDv5G8ERVsmCbDQfJ9hKbeJCMX6tChW5TJdMNPJtRzGAAAAAAAAAAA\n",
    "-----END OPENSSH PRIVATE KEY-----",
)

# (id, text, the secret in it, its kind): the text redacted is text.replace(secret, marker).
SECRETS: list[tuple[str, str, str, str]] = [
    ("aws id in env", f"export AWS_ACCESS_KEY_ID={AWS_ID}", AWS_ID, "aws-access-key"),
    ("aws id in prose", f"The key id {AWS_ID} was leaked.", AWS_ID, "aws-access-key"),
    (
        "aws secret in env",
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        AWS_SECRET,
        "aws-secret-key",
    ),
    (
        "aws secret in ini",
        f"[default]\naws_secret_access_key = {AWS_SECRET}\n",
        AWS_SECRET,
        "aws-secret-key",
    ),
    ("aws secret quoted", f'aws_secret = "{AWS_SECRET}"', AWS_SECRET, "aws-secret-key"),
    ("aws secret in json", f'{{"SecretAccessKey": "{AWS_SECRET}"}}', AWS_SECRET, "aws-secret-key"),
    (
        "aws documentation key",
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws-secret-key",
    ),
    (
        "github classic",
        f"git clone https://{GITHUB}@github.com/org/repo.git",
        GITHUB,
        "github-token",
    ),
    ("github in header", f"Authorization: token {GITHUB}", GITHUB, "github-token"),
    ("github fine-grained", f"GH_TOKEN={GITHUB_PAT} gh pr list", GITHUB_PAT, "github-token"),
    (
        "gitlab",
        f"git remote set-url origin https://oauth2:{GITLAB}@gitlab.com/g/p.git",
        GITLAB,
        "gitlab-token",
    ),
    ("slack bot", f'client = WebClient(token="{SLACK}")', SLACK, "slack-token"),
    ("slack webhook", f"curl -X POST {SLACK_HOOK} -d '{{}}'", SLACK_HOOK, "slack-webhook"),
    ("stripe live", f"stripe.api_key = '{STRIPE}'", STRIPE, "stripe-key"),
    ("stripe restricted test", f"STRIPE_KEY={STRIPE_TEST}", STRIPE_TEST, "stripe-key"),
    ("openai project", f"OPENAI_API_KEY={OPENAI_PROJECT}", OPENAI_PROJECT, "openai-key"),
    ("openai legacy", f'openai.api_key = "{OPENAI_LEGACY}"', OPENAI_LEGACY, "openai-key"),
    ("anthropic", f"ANTHROPIC_API_KEY={ANTHROPIC} claude", ANTHROPIC, "anthropic-key"),
    ("anthropic in json", f'{{"x-api-key": "{ANTHROPIC}"}}', ANTHROPIC, "anthropic-key"),
    (
        "google api key",
        f"https://maps.googleapis.com/maps/api/geocode/json?key={GOOGLE}&address=x",
        GOOGLE,
        "google-api-key",
    ),
    (
        "huggingface",
        f"huggingface-cli login --token {HUGGINGFACE}",
        HUGGINGFACE,
        "huggingface-token",
    ),
    ("jwt in bearer", f"Authorization: Bearer {JWT}", JWT, "jwt"),
    ("jwt in cookie", f"Cookie: session={JWT}; theme=dark", JWT, "jwt"),
    ("sendgrid", f"SENDGRID_API_KEY='{SENDGRID}'", SENDGRID, "sendgrid-key"),
    ("pypi", f"twine upload -u __token__ -p {PYPI} dist/*", PYPI, "pypi-token"),
    ("npm granular", f"//registry.npmjs.org/:_authToken={NPM}", NPM, "npm-token"),
    ("npm legacy", f"//registry.npmjs.org/:_authToken={NPM_LEGACY}\n", NPM_LEGACY, "npm-token"),
    ("twilio sid", f"TWILIO_ACCOUNT_SID={TWILIO}", TWILIO, "twilio-key"),
    (
        "mailchimp",
        f"mailchimp.set_config({{'api_key': '{MAILCHIMP}'}})",
        MAILCHIMP,
        "mailchimp-key",
    ),
    ("discord", f"client.run('{DISCORD}')", DISCORD, "discord-token"),
    ("telegram", f"https://api.telegram.org/bot{TELEGRAM}/getMe", TELEGRAM, "telegram-token"),
    (
        "azure",
        f"DefaultEndpointsProtocol=https;AccountName=dev;AccountKey={AZURE};EndpointSuffix=x",
        AZURE,
        "azure-storage-key",
    ),
    ("square", f"SQUARE_SECRET={SQUARE}", SQUARE, "square-secret"),
    ("pem rsa", f"cat id_rsa\n{PEM}\n$ ls", PEM, "private-key"),
    ("pem openssh", f"```\n{OPENSSH}\n```", OPENSSH, "private-key"),
    (
        "pem escaped in json",
        '{"private_key": "' + PEM.replace("\n", "\\n") + '\\n"}',
        PEM.replace("\n", "\\n"),
        "private-key",
    ),
    (
        "pem cut off",
        PEM[: PEM.index("-----END")] + "[output truncated]",
        PEM[: PEM.index("-----END") - 1],
        "private-key",
    ),
    (
        "url password",
        "DATABASE_URL=postgres://app:Zk8vR2wQ9x@db.internal:5432/app",
        "Zk8vR2wQ9x",
        "url-password",
    ),
    (
        "url password redis",
        "redis://default:9f8e7d6c5b4a@cache:6379/0",
        "9f8e7d6c5b4a",
        "url-password",
    ),
    (
        "s3 presigned",
        f"https://b.s3.amazonaws.com/a.png?X-Amz-Expires=60&X-Amz-Signature={S3_SIGNATURE}",
        S3_SIGNATURE,
        "url-signature",
    ),
    (
        "bearer header curl",
        f"curl -H 'Authorization: Bearer {BEARER}' https://api.example.com",
        BEARER,
        "bearer-token",
    ),
    (
        "bearer header json",
        f'headers = {{"Authorization": "Bearer {BEARER}"}}',
        BEARER,
        "bearer-token",
    ),
    ("bearer bare", f"use Bearer {BEARER} for the call", BEARER, "bearer-token"),
    ("basic header", f"Authorization: Basic {BASIC}\r\nHost: x", BASIC, "basic-auth"),
    ("password env", "DB_PASSWORD=Tr0ub4dor&3", "Tr0ub4dor&3", "password"),
    ("password json", '{"username": "ada", "password": "hunter2!"}', "hunter2!", "password"),
    (
        "password yaml",
        "db:\n  user: app\n  password: n0t-a-pl4ceholder\n",
        "n0t-a-pl4ceholder",
        "password",
    ),
    (
        "password python",
        'conn = psycopg.connect(password="s3cr3t-pw", host="db")',
        "s3cr3t-pw",
        "password",
    ),
    ("password cli", "mysql -u root --password=Zq8!vR2w app", "Zq8!vR2w", "password"),
    ("password cli spaced", "pg_dump --password Zq8vR2wK app", "Zq8vR2wK", "password"),
    (
        "password connection string",
        "Server=db;User Id=sa;Password=Str0ngP@ss;Encrypt=true",
        "Str0ngP@ss",
        "password",
    ),
    ("password pgpassword", "PGPASSWORD=Xk2#mP9q psql -h db", "Xk2#mP9q", "password"),
    ("password escaped json", '{\\"password\\": \\"hunter2x\\"}', "hunter2x", "password"),
    ("api key export", "export API_KEY=ak_9f8e7d6c5b4a3928", "ak_9f8e7d6c5b4a3928", "api-key"),
    ("api key header", "X-Api-Key: 9f8e7d6c5b4a39281706\n", "9f8e7d6c5b4a39281706", "api-key"),
    ("api key typed", 'api_key: str = "AbC123dEf456GhI789"', "AbC123dEf456GhI789", "api-key"),
    ("token env", "export GITHUB_TOKEN=abc123def456ghi789", "abc123def456ghi789", "token"),
    (
        "token query",
        "GET /v1/me?access_token=ya29.a0AfH6SMBx3dE6gH9jK2mN5pQ&fields=id",
        "ya29.a0AfH6SMBx3dE6gH9jK2mN5pQ",
        "token",
    ),
    ("secret python", 'client_secret = "0a1b2c3d4e5f6a7b8c9d"', "0a1b2c3d4e5f6a7b8c9d", "secret"),
    (
        "secret django",
        "SECRET_KEY = 'django-insecure-7x!k2p#9q@m4v&z8w'",
        "django-insecure-7x!k2p#9q@m4v&z8w",
        "secret",
    ),
]

LOOKALIKES: list[str] = [
    "Reset your password in settings, then sign in again.",
    "The API key and the token are kept in the keychain; rotate the secret monthly.",
    "Your password: must be at least 12 characters long",
    "Password reset link sent. Passwordless login is also available.",
    "commit 3f2a9c1e4b5d6f7a8b9c0d1e2f3a4b5c6d7e8f90\nAuthor: Ada <ada@example.com>",
    "git diff 3f2a9c1e4b5d6f7a8b9c0d1e2f3a4b5c6d7e8f90..a1b2c3d",
    "session_id: 9b2c7a4e-1f3d-4c5b-8a9e-0d1c2b3a4f5e, id 123e4567-e89b-12d3-a456-426614174000",
    '"integrity": "sha512-Zk3vQ9x0bN2mL7pR4tY8uW1eA6sD5fG3hJ2kL9zX7cV4bN1mQ8wE5rT2yU6iO0pA3sD7fG9"',
    '"integrity": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="',
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "data = base64.b64decode('SGVsbG8gV29ybGQhIFRoaXMgaXMgYSB0ZXN0IG9mIGJhc2U2NA==')",
    "password=<your password>",
    "password=***",
    "password=${DB_PASSWORD}",
    'password: "{{ vault_db_password }}"',
    'key = os.environ["API_KEY"]',
    "api_key = os.getenv('API_KEY')",
    "token = tokenizer.next_token()",
    "for token in tokens:\n    if token == '(':\n        depth += 1",
    "tokens = text.split()\nmax_tokens=4096\ntoken_count: 12",
    'token_type: "bearer"\nexpires_in: 3600',
    "next_page_token = response['nextPageToken']",
    "def connect(api_key: str, password: str | None = None) -> Client:",
    "    api_key: str\n    password: SecretStr\n    token: Optional[str] = None",
    "self.password = password\nconnect(user=user, password=password)",
    "api_key=settings.OPENAI_API_KEY",
    "secret = ''\ntoken = None",
    "/home/ada/.ssh/id_rsa and src/reflexio_mcp/secret_redaction.py",
    "private_key_path: keys/deploy.pem\npassword_file: /run/secrets/db",
    "PWD=/home/ada/project",
    "ThisIsAVeryLongIdentifierNameForSomeAbstractFactoryBeanImplementation",
    "postgres://user:password@localhost/db and mysql://root:<password>@localhost",
    "ssh git@github.com:org/repo.git and https://github.com/org/repo/blob/main/README.md",
    '<input type="password" name="pw" placeholder="Password">',
    "Bearer authentication is described in RFC 6750.",
    'headers = {"Authorization": f"Bearer {token}"}',
    'curl -H "Authorization: Bearer $TOKEN" https://api.example.com',
    "Authorization: Bearer <token>\nAuthorization: Bearer YOUR_API_KEY",
    "sorted(items, key=lambda item: item[1]); primary_key = True",
    "    else:\n        pass\n",
    "AKIA is the prefix of AWS access key ids; sk- starts OpenAI keys.",
    "pip install scikit-learn; hf_hub_download(repo_id='x')",
    "eyJhbGciOiJIUzI1NiJ9 is only a JWT header",
    "AccountName=dev;AccountKey=<key>",
    'const secret = process.env.SECRET;\npassword := os.Getenv("PW")',
    "api_key = 'sk-...'\nAPI_KEY=sk-xxxx\ntoken: xxxxxxxxxxxxxxxx",
    'password = "password123"\npassword=changeme\n"password": "string"\npassword: required',
    "secret_name: prod/db\nsecretsmanager get-secret-value --secret-id prod/db",
    "pad_token: '<pad>'\neos_token_id: 2",
    "- POSTGRES_PASSWORD_FILE=/run/secrets/db_password",
    "password: ${{ secrets.DB_PASSWORD }}\nDB_PASSWORD=$DB_PASSWORD",
    '"credentials": "include", "auth": true',
    "用户的密码 password 请在设置中重置。パスワードを変更してください。",
    "-----BEGIN RSA PRIVATE KEY----- starts a PEM key file.",
    "request_id=7f9c2ba4e88f827d616045507605853e status=200 latency_ms=12",
    "model = 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.from_pretrained(name)",
    "Authorization: AWS4-HMAC-SHA256 Credential=abc/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host",
    "auth: basic_auth_v2\ncredentials: prod-db-2\nregion: us-east-1\n",
    "[REDACTED:aws-access-key] and [REDACTED] are markers, kept as they are",
    "",
]


@pytest.fixture(scope="module", autouse=True)
def _rules() -> None:
    prepare()


@pytest.mark.parametrize(
    ("text", "secret", "kind"), [c[1:] for c in SECRETS], ids=[c[0] for c in SECRETS]
)
def test_realistic_secrets_are_redacted_and_only_they(text: str, secret: str, kind: str) -> None:
    redacted, counts = redact_text(text)
    assert secret not in redacted
    assert redacted == text.replace(secret, marker(kind))
    assert counts == Counter({kind: 1})


def test_the_corpus_covers_every_kind() -> None:
    assert {kind for *_, kind in SECRETS} == KINDS


@pytest.mark.parametrize("text", LOOKALIKES, ids=range(len(LOOKALIKES)))
def test_lookalikes_are_kept_byte_for_byte(text: str) -> None:
    assert find_secrets(text) == []
    assert redact_text(text) == (text, Counter())


def test_detect_secrets_keywords_are_all_secret_names() -> None:
    from detect_secrets.plugins.keyword import DENYLIST

    for term in DENYLIST:
        for name in {term.replace("_?", "_"), term.replace("_?", "")}:
            assert key_kind(name) is not None, name
            assert key_kind(name.upper()) is not None, name


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("GITHUB_TOKEN", "token"),
        ("apiKey", "api-key"),
        ("x-api-key", "api-key"),
        ("db_pass", "password"),
        ("PGPASSWORD", "password"),
        ("secret_key_base", "secret"),
        ("aws_secret_access_key", "aws-secret-key"),
        ("private_key", "private-key"),
        ("Authorization", "authorization"),
        ("token_type", None),
        ("max_tokens", None),
        ("next_page_token", None),
        ("password_hint", None),
        ("primary_key", None),
        ("tokenizer", None),
        ("bypass", None),
    ],
)
def test_secret_names(name: str, kind: str | None) -> None:
    assert key_kind(name) == kind


def tool_turn(data: dict[str, Any], status: str = "success") -> InteractionData:
    return InteractionData(
        role="assistant",
        content="ran it",
        tools_used=[ToolUsed(tool_name="bash", tool_data=data, status=status)],
    )


def test_tool_data_is_redacted_at_any_depth_and_by_name() -> None:
    data: dict[str, Any] = {
        "command": f"export GITHUB_TOKEN={GITHUB}",
        "env": {"DB_PASSWORD": "correct horse battery staple", "DEBUG": "1", "PORT": 8080},
        "request": {
            "headers": {"Authorization": f"Bearer {BEARER}", "Accept": "application/json"},
            "params": [
                {"name": "api_key", "value": "9f8e7d6c5b4a3928"},
                {"name": "q", "value": "x"},
            ],
        },
        "nested": [[{"config": {"client_secret": "0a1b2c3d4e5f6a7b8c9d", "timeout": 3}}]],
        "output": json.dumps({"password": "hunter2!", "ok": True}),
        "keys": {AWS_ID: "a key id used as a name"},
        "flags": [True, None, 1.5],
        "api_key": "",
    }
    result = redact_turns([tool_turn(data, status=f"failed: bad token {SLACK}")])
    (tool,) = result.turns[0].tools_used
    assert tool.tool_data == {
        "command": "export GITHUB_TOKEN=[REDACTED:github-token]",
        "env": {"DB_PASSWORD": "[REDACTED:password]", "DEBUG": "1", "PORT": 8080},
        "request": {
            "headers": {
                "Authorization": "Bearer [REDACTED:bearer-token]",
                "Accept": "application/json",
            },
            "params": [
                {"name": "api_key", "value": "[REDACTED:api-key]"},
                {"name": "q", "value": "x"},
            ],
        },
        "nested": [[{"config": {"client_secret": "[REDACTED:secret]", "timeout": 3}}]],
        "output": json.dumps({"password": "[REDACTED:password]", "ok": True}),
        "keys": {"[REDACTED:aws-access-key]": "a key id used as a name"},
        "flags": [True, None, 1.5],
        "api_key": "",
    }
    assert tool.status == "failed: bad token [REDACTED:slack-token]"
    assert result.counts == {
        "api-key": 1,
        "aws-access-key": 1,
        "bearer-token": 1,
        "github-token": 1,
        "password": 2,
        "secret": 1,
        "slack-token": 1,
    }
    assert result.total == 8


def test_every_scanned_field_and_not_the_image() -> None:
    image = base64.b64encode(f"{AWS_ID} {GITHUB}".encode() * 10).decode()
    turn = InteractionData(
        role="user",
        content=f"key {AWS_ID}",
        expert_content=f"never paste {GITHUB}",
        user_action="type",
        user_action_description=f"typed password=Zq8!vR2w into {SLACK}",
        interacted_image_url=f"https://b.s3.amazonaws.com/i.png?X-Amz-Signature={S3_SIGNATURE}",
    )
    picture = InteractionData(role="user", image_encoding=image)  # one image per turn
    out, pictured = redact_turns([turn, picture]).turns
    assert out.content == "key [REDACTED:aws-access-key]"
    assert out.expert_content == "never paste [REDACTED:github-token]"
    assert (
        out.user_action_description
        == "typed password=[REDACTED:password] into [REDACTED:slack-token]"
    )
    assert out.interacted_image_url.endswith("X-Amz-Signature=[REDACTED:url-signature]")
    assert pictured.image_encoding == image
    assert out.role == "user"
    assert out.user_action == "type"


def test_counts_add_up_over_turns_and_are_empty_without_secrets() -> None:
    turns = [
        InteractionData(content=f"{AWS_ID} and {AWS_ID}"),
        InteractionData(content=f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}"),
        InteractionData(content="nothing here"),
    ]
    result = redact_turns(turns)
    assert result.counts == {"aws-access-key": 2, "aws-secret-key": 1}
    assert result.total == 3
    clean = redact_turns([InteractionData(content="hello")])
    assert clean.counts == {}
    assert clean.total == 0
    assert redact_turns([]).turns == []


def test_input_is_never_mutated_and_nothing_mutable_is_shared() -> None:
    data: dict[str, Any] = {"env": {"API_KEY": "ak_9f8e7d6c5b4a3928"}, "list": [GITHUB, {"a": 1}]}
    turns = [tool_turn(data), InteractionData(content=f"plain {AWS_ID}")]
    before = [t.model_dump() for t in turns]
    fields_set = [set(t.model_fields_set) for t in turns]
    result = redact_turns(turns)
    assert [t.model_dump() for t in turns] == before
    assert [t.model_fields_set for t in result.turns] == fields_set
    for old, new in zip(turns, result.turns, strict=True):
        assert new is not old
        assert new.tools_used is not old.tools_used
        for old_tool, new_tool in zip(old.tools_used, new.tools_used, strict=True):
            assert new_tool is not old_tool
            assert new_tool.tool_data is not old_tool.tool_data
            assert new_tool.tool_data["list"][1] is not old_tool.tool_data["list"][1]


def test_output_validates_and_publishes() -> None:
    turns = [InteractionData(content=text) for _, text, _, _ in SECRETS] + [
        tool_turn({"env": {"TOKEN": "abc123def456ghi789"}})
    ]
    result = redact_turns(turns)
    request = PublishRequest(
        request_id="r", user_id="u", session_id="s", interaction_data_list=result.turns
    )
    again = PublishRequest.model_validate_json(request.checked_body(now=1_700_000_000))
    assert [t.model_dump() for t in again.interaction_data_list] == [
        {**t.model_dump(), "created_at": 1_700_000_000} for t in result.turns
    ]
    for turn in result.turns:
        InteractionData.model_validate(turn.model_dump())


def test_redacting_twice_changes_nothing_more() -> None:
    turns = [InteractionData(content=text) for _, text, _, _ in SECRETS]
    turns.append(
        tool_turn(
            {
                "Authorization": f"Basic {BASIC}",
                "password": "hunter2!",
                "n": [f"sk-ant {ANTHROPIC}"],
            }
        )
    )
    first = redact_turns(turns)
    second = redact_turns(first.turns)
    assert second.counts == {}
    assert [t.model_dump() for t in second.turns] == [t.model_dump() for t in first.turns]


def test_markers_are_never_secrets() -> None:
    text = (
        "export API_KEY=[REDACTED:api-key]\n"
        '{"password": "[REDACTED:password]"}\n'
        "postgres://app:[REDACTED:url-password]@db/app\n"
        "Authorization: Bearer [REDACTED:bearer-token]\n"
        "password=[REDACTED] token: [REDACTED:jwt]\n"
    )
    assert find_secrets(text) == []


def test_a_field_at_its_limit_stays_within_it() -> None:
    unit = "password=Zq8!vR2w "
    text = (unit * (10_000 // len(unit) + 1))[:10_000]
    turn = InteractionData(user_action_description=text, tools_used=[tool_turn({}).tools_used[0]])
    turn.tools_used[0].status = text[:1000]
    (out,) = redact_turns([turn]).turns
    assert len(out.user_action_description) <= 10_000
    assert "Zq8!vR2w" not in out.user_action_description
    assert SHORT_MARKER in out.user_action_description
    assert len(out.tools_used[0].status) <= 1000
    assert "Zq8!vR2w" not in out.tools_used[0].status
    InteractionData.model_validate(out.model_dump())
    url = f"https://b.example/i.png?sig={S3_SIGNATURE}&" + "a=b&" * 490
    (out,) = redact_turns([InteractionData(interacted_image_url=url[:2048])]).turns
    assert len(out.interacted_image_url) <= 2048
    assert S3_SIGNATURE not in out.interacted_image_url


def test_a_private_key_block_is_redacted_whole_in_any_form() -> None:
    windows = PEM.replace("\n", "\r\n")
    escaped = json.dumps({"key": PEM})[1:-1]
    pkcs8 = PEM.replace("RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
    text = f"a\n{windows}\nb {escaped} c\n{pkcs8}\n{OPENSSH}\nd"
    redacted, counts = redact_text(text)
    assert counts == Counter({"private-key": 4})
    assert "MIIE" not in redacted
    assert "b3Blbn" not in redacted
    assert redacted.startswith("a\n[REDACTED:private-key]\nb ")
    assert redacted.endswith("\n[REDACTED:private-key]\nd")


def test_a_secret_in_a_1mb_single_line_and_adversarial_input_stay_linear() -> None:
    filler = json.dumps(
        [{"id": i, "sha": "3f2a9c1e4b5d6f7a8b9c0d1e2f3a4b5c6d7e8f90"} for i in range(20000)]
    )
    line = (
        f'{{"a":"{AWS_ID}",'
        + filler[: 1_000_000 - 200]
        + f',"password":"hunter2!","b":"{GITHUB}"}}'
    )
    assert "\n" not in line
    assert len(line) > 990_000
    started = time.perf_counter()
    redacted, counts = redact_text(line)
    assert counts == Counter({"aws-access-key": 1, "password": 1, "github-token": 1})
    assert len(redacted) == len(line) - 20 - 8 - 40 + sum(len(marker(k)) for k in counts)
    hostile = [
        "eyJ" * 100_000,
        "sk-" * 100_000,
        "ghp_" * 60_000,
        "a" * 300_000,
        "password=" * 30_000,
        "token " * 50_000,
        "://a:" * 60_000,
        "-----BEGIN RSA PRIVATE KEY-----\n" * 8_000,
        "1234567890:" * 30_000,
        ("." + "a" * 6) * 40_000,
        "AccountKey=" * 30_000,
        "aws_secret=" * 30_000,
        "_authToken=" * 30_000,
        "-us1" * 50_000,
        "--password " * 30_000,
    ]
    for text in hostile:
        redact_text(text)
    assert time.perf_counter() - started < 15  # ~1 s; quadratic would take many minutes


def test_a_jwt_shaped_bomb_does_not_raise() -> None:
    nested = b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    payload = base64.urlsafe_b64encode(nested).rstrip(b"=").decode()
    text = b64url({"alg": "none"}) + "." + payload[:49_000] + ".sig"
    assert redact_text(text) == (text, Counter())


def test_find_secrets_in_many_texts_matches_each_alone() -> None:
    head, tail = PEM.split("-----END")
    texts = [head, "-----END" + tail, f"x {AWS_ID}", "password:", "hunter2x", PEM, "", GITHUB]
    assert find_secrets_in(texts) == [find_secrets(t) for t in texts]
    assert find_secrets_in(texts)[2] == [Finding(2, 22, "aws-access-key")]


def test_concurrent_redaction_gives_the_same_answers() -> None:
    turns = [InteractionData(content=text * 20) for _, text, _, _ in SECRETS]
    expected = redact_turns(turns)
    answers: list[Any] = []

    def work() -> None:
        for _ in range(3):
            answers.append(redact_turns(turns))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12
    for answer in answers:
        assert answer.counts == expected.counts
        assert [t.content for t in answer.turns] == [t.content for t in expected.turns]


def test_secrets_never_reach_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = redact_turns([InteractionData(content=text) for _, text, _, _ in SECRETS])
    shown = repr(result) + repr(find_secrets(SECRETS[0][1])) + caplog.text
    for _, _, secret, _ in SECRETS:
        assert secret not in shown


def test_global_state_is_left_alone() -> None:
    from detect_secrets.settings import get_settings

    settings_before = copy.deepcopy(get_settings().json())
    redact_text(f"{AWS_ID} password=hunter2!")
    assert get_settings().json() == settings_before
    # Importing detect-secrets turns on logging.captureWarnings; building the rules undoes it.
    fresh = (
        "import warnings\n"
        "shown = warnings.showwarning\n"
        "from reflexio_mcp.secrets import prepare\n"
        "prepare()\n"
        "assert warnings.showwarning is shown\n"
    )
    subprocess.run([sys.executable, "-c", fresh], check=True, cwd=Path(__file__).parents[3])


def test_the_rules_build_after_the_first_tool_list_in_a_thread_never_on_the_event_loop(
    tmp_path: Path,
) -> None:
    """The rules start building in a thread of their own once the first tools/list is answered
    (not during the handshake); a call that needs them meanwhile (an invalid argument, whose
    message is checked for secrets) waits off the loop, which keeps answering; the rules are
    built once."""
    script = f"""
import sys, threading, anyio
from mcp import Client
import reflexio_mcp.secrets.scanner as scanner
from reflexio_mcp.app import build_server
from reflexio_mcp.settings import Settings

build = scanner._build
builders = []
release = threading.Event()

def held_build():
    builders.append(threading.current_thread())
    release.wait(30)  # the build lasts until the loop has been seen serving meanwhile
    return build()

scanner._build = held_build

async def main():
    server = build_server(Settings(backend="embedded", data_dir={str(tmp_path)!r}))
    assert not builders and "detect_secrets" not in sys.modules
    async with Client(server) as client:
        await anyio.sleep(0.3)
        assert not builders, "the build began before the first tools/list"
        await client.list_tools()
        with anyio.fail_after(10):
            while not builders:
                await anyio.sleep(0.01)
        assert builders[0] is not threading.main_thread(), "built on the event loop's thread"
        answers = []

        async def invalid_call():
            answers.append(
                await client.call_tool(
                    "search_interactions", {{"query": "x", "start_time": "yesterday"}}
                )
            )

        async with anyio.create_task_group() as calls:
            calls.start_soon(invalid_call)
            await anyio.sleep(0.2)
            with anyio.fail_after(10):
                await client.list_tools()  # the loop answers while the build goes on
            assert not answers, "the invalid argument did not wait for the rules"
            release.set()
        (answer,) = answers
        assert answer.is_error and "start_time" in answer.content[0].text, answer
        assert scanner.prepared() and len(builders) == 1
        result = await client.call_tool(
            "publish_interaction",
            {{"user_message": "my key is {AWS_ID}", "agent_response": "noted"}},
        )
        assert result.structured_content["redacted"] == {{"aws-access-key": 1}}, result
        assert len(builders) == 1

anyio.run(main)
"""
    subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[3], timeout=120
    )


def test_building_the_rules_never_loads_requests_and_leaves_the_real_one_importable() -> None:
    """detect-secrets imports requests (5.7 MiB with urllib3 and the rest) for verify() alone,
    which makes network calls: while it is imported, requests is a stand-in that refuses any
    use; afterwards `import requests` gets the real module."""
    script = f"""
import sys
from reflexio_mcp.secrets import find_secrets, prepare
prepare()
assert "requests" not in sys.modules and "urllib3" not in sys.modules, sorted(sys.modules)
assert [f.kind for f in find_secrets("key {AWS_ID} here")] == ["aws-access-key"]
import detect_secrets.plugins.base as base
try:
    base.requests.post
except RuntimeError as err:
    assert "verify() is never used" in str(err)
else:
    raise AssertionError("the stand-in let requests be used")
import requests
assert requests.Session is not None and requests is not base.requests
"""
    subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[3], timeout=120
    )


# Property tests: secrets spliced into random text, and random text.

SAFE_WORDS = [
    "the", "a", "deploy", "server", "failed", "again", "password", "token", "key", "secret",
    "reset", "settings", "日本語", "ok", "42", "v1.2.3", "src/app.py", "user@example.com", "—",
]  # fmt: skip
safe_text = st.lists(
    st.one_of(st.sampled_from(SAFE_WORDS), st.sampled_from([" ", "\n", ", ", ". "])), max_size=30
).map(" ".join)
TOKENISH = string.ascii_letters + string.digits + "-_=:/.@\"'` \n+{}$[]\\"
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@FUZZ
@given(
    before=safe_text,
    after=safe_text,
    case=st.sampled_from(SECRETS),
    left=st.sampled_from([" ", "\n", "\t", "\n\n"]),
    right=st.sampled_from(["\n", " \n", "\n\n"]),
)
def test_a_secret_anywhere_in_text_is_gone_and_the_rest_intact(
    before: str, after: str, case: tuple[str, str, str, str], left: str, right: str
) -> None:
    _, text, secret, kind = case
    redacted, counts = redact_text(before + left + text + right + after)
    assert redacted == before + left + text.replace(secret, marker(kind)) + right + after
    assert counts == Counter({kind: 1})


@FUZZ
@given(text=safe_text)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact_text(text) == (text, Counter())


@FUZZ
@given(text=st.text(max_size=300) | st.text(alphabet=TOKENISH, max_size=300))
@example(text="password=\n")
@example(text="-----BEGIN EC PRIVATE KEY-----\\n")
def test_random_text_changes_only_where_a_detector_fires(text: str) -> None:
    found = find_secrets(text)
    redacted, counts = redact_text(text)
    assert counts == Counter(f.kind for f in found)
    rebuilt: list[str] = []
    last = 0
    for finding in found:
        assert last <= finding.start < finding.end <= len(text)
        assert finding.kind in KINDS
        rebuilt += [text[last : finding.start], marker(finding.kind)]
        last = finding.end
    assert redacted == "".join([*rebuilt, text[last:]])
    assert redact_text(redacted)[0] == redacted
    if text.strip():
        (turn,) = redact_turns([InteractionData(content=text)]).turns
        InteractionData.model_validate(turn.model_dump())


SECRET_TEXTS = [text for _, text, _, _ in SECRETS]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(SECRET_TEXTS),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=12)
            | st.sampled_from(["password", "api_key", "token", "name", "value", "Authorization"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def shape(value: Any) -> Any:
    """A JSON value with every string blanked: what redaction must keep."""
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return [shape(item) for item in cast(list[Any], value)]
    if isinstance(value, dict):
        return sorted((shape(item) for item in cast(dict[str, Any], value).values()), key=repr)
    return value


@FUZZ
@given(data=st.dictionaries(st.text(max_size=12), json_values, max_size=5))
def test_random_tool_data_keeps_its_shape_and_loses_its_secrets(data: dict[str, Any]) -> None:
    result = redact_turns([tool_turn(data)])
    (turn,) = result.turns
    InteractionData.model_validate(turn.model_dump())
    out = turn.tools_used[0].tool_data
    assert shape(out) == shape(data)
    dumped = json.dumps(out, ensure_ascii=False)
    for text, secret in ((text, secret) for _, text, secret, _ in SECRETS):
        if text in json.dumps(data, ensure_ascii=False) or text in str(data):
            assert secret not in dumped
    assert redact_turns(result.turns).counts == {}


@FUZZ
@given(
    texts=st.lists(
        st.sampled_from(SECRET_TEXTS) | safe_text | st.text(alphabet=TOKENISH, max_size=60),
        max_size=8,
    )
)
def test_scanning_a_publish_at_once_is_scanning_each_text(texts: list[str]) -> None:
    assert find_secrets_in(texts) == [find_secrets(text) for text in texts]
