"""Secrets in a publish's turns are replaced by `[REDACTED:<kind>]` before anything is stored.

Coding-agent transcripts carry API keys, tokens and passwords (a pasted `.env`, `curl -H
"Authorization: ..."`, tool output echoing a config). `redact_turns` returns copies of the turns
in which only each secret's characters are replaced (`export AWS_SECRET_ACCESS_KEY=wJal...`
becomes `export AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key]`), and how many of each kind.

Scanned: `role`, `content`, `expert_content`, `user_action_description`, `interacted_image_url`,
`tools_used[*].tool_name` and `.status`, and every string anywhere in `tools_used[*].tool_data`
(keys too); there a
string under a name such as "password", "api_key", "client_secret" or "GITHUB_TOKEN" (or the
"value" beside {"name": "DB_PASSWORD"}) is a secret by its name, as detect-secrets'
KeywordDetector reasons. Never `image_encoding`: base64 images are high-entropy by nature.
The input is never mutated; no secret value appears in anything returned (but the text it was
not recognised in), nor in a log or an exception: this module logs nothing and raises nothing
of its own.

Kinds (stable slugs: the `<kind>` of the marker and the keys of `Redaction.counts`):

    private-key        a PEM private key block, BEGIN line to END line (RSA, EC, DSA, OPENSSH,
                       PGP, PKCS#8, SSH2), or a value under a private_key name
    aws-access-key     AWS access key id (AKIA..., ASIA..., ABIA..., ACCA...)
    aws-secret-key     AWS secret access key (40 characters assigned to aws...secret...)
    github-token       GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)
    gitlab-token       GitLab token (glpat-, gldt-, glft-, glsoat-, glrt-, glcbt-, GR1348941...)
    slack-token        Slack token (xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-)
    slack-webhook      Slack incoming-webhook URL
    stripe-key         Stripe secret or restricted key (sk_live_, rk_live_, sk_test_, rk_test_)
    openai-key         OpenAI key (sk-proj-, sk-svcacct-, sk-admin-, legacy sk-...T3BlbkFJ...)
    anthropic-key      Anthropic key (sk-ant-api03-..., sk-ant-admin01-..., sk-ant-oat01-...)
    google-api-key     Google API key (AIza...)
    huggingface-token  Hugging Face token (hf_...)
    jwt                JSON Web Token (eyJ...), only if its header and payload decode as JSON
    sendgrid-key       SendGrid API key (SG.<22>.<43>)
    pypi-token         PyPI or TestPyPI upload token (pypi-AgEI...)
    npm-token          npm token (npm_..., or the value of `_authToken=` in an .npmrc)
    twilio-key         Twilio account or API key SID (AC or SK + 32 hex)
    mailchimp-key      Mailchimp API key (32 hex + -usNN)
    discord-token      Discord bot token
    telegram-token     Telegram bot token (123456789:AA...)
    azure-storage-key  Azure storage account key (AccountKey=...)
    square-secret      Square OAuth secret (sq0csp-...)
    url-password       the password in a `scheme://user:password@host` URL
    url-signature      the signature of a signed URL (X-Amz-Signature=, X-Goog-Signature=, sig=)
    bearer-token       the credentials of `Authorization: Bearer|Token|Bot ...`, or `Bearer ...`
    basic-auth         the credentials of `Authorization: Basic ...`
    password           a value assigned to a password-like name (password, passwd, pwd, DB_PASS)
    secret             a value assigned to a secret-like name (client_secret, SECRET_KEY, auth)
    api-key            a value assigned to an api-key-like name (api_key, apiKey, X-Api-Key)
    token              a value assigned to a token-like name (GITHUB_TOKEN, access_token)

How. The vendor patterns are detect-secrets' plugins (the compiled regexes in their `denylist`,
read through a small typed seam), plus a few narrowly-scoped detectors written as subclasses of
its plugins for what 1.5.0 lacks or gets wrong for redaction (each says why): GitHub
fine-grained tokens, Stripe test keys, OpenAI project/service keys, Anthropic keys, Google API
keys, Hugging Face tokens, whole PEM blocks, unquoted AWS secret keys, signed-URL signatures,
`Authorization` headers, and `name = value` assignments (a keyword rule). Its scanning entry
points (`scan_line`, `SecretsCollection`, `analyze_line`) are not used: they read process-wide
settings (`transient_settings` swaps a global, so it is not thread-safe), cost a settings lookup
and object construction per line, may run `verify()` (network calls), and report values, not
positions. Here each regex runs once over a whole publish: its strings joined by newlines (no
rule matches across a newline but a PEM block, whose strings are then scanned alone), so a 1 MB
single line, a multi-line key or ten thousand small tool-data strings cost one linear pass per
regex. Regexes start with a literal where they can (several times faster in `re`), are skipped
when their literal is absent, and try a run of token characters once, not at every offset: no
input makes the scan quadratic. Where detectors overlap the most specific wins (a known token
shape, then a structural rule, then a keyword assignment). The rule set is built once, on first
use (importing detect-secrets takes ~0.4 s: the first publish does it in a thread), and only read
after: redaction is thread-safe. Existing markers are never secrets, so redacting twice changes
nothing more.

detect-secrets plugins left off, and why:
- Base64HighEntropyString, HexHighEntropyString: they flag any quoted high-entropy string: git
  SHAs, sha256/sha512 digests in lockfiles, base64 in code, ids. Those fill coding transcripts,
  and redacting them destroys memories. Entropy-like checks are used only on values already
  under a secret-like name (`SECRET_KEY=AbCd...` vs `api_key=api_key`).
- KeywordDetector's regexes: they take the rest of the line as the secret (`password: please reset
  it` gives "please reset it"), find only the first hit per regex per line, choose quoted or
  unquoted forms by file name, and have no "token". Its keyword list is kept (plus token,
  credentials, auth) in a rule that checks placeholders, references and type hints.
- ArtifactoryDetector: its `AP[0-9A-F]...` password pattern matches all-caps identifiers.
- IbmCloudIamDetector, IbmCosHmacDetector, SoftlayerDetector, CloudantDetector: assignment
  patterns with empty or two-letter prefixes (`key = <44 chars>`) that fire on digests and name
  them IBM keys; the keyword rule covers real assignments.
- IPPublicDetector: a public IP address is not a credential.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import logging
import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from reflexio_mcp.core.models import InteractionData, ToolUsed

KINDS: Final = frozenset(
    {
        "private-key", "aws-access-key", "aws-secret-key", "github-token", "gitlab-token",
        "slack-token", "slack-webhook", "stripe-key", "openai-key", "anthropic-key",
        "google-api-key", "huggingface-token", "jwt", "sendgrid-key", "pypi-token", "npm-token",
        "twilio-key", "mailchimp-key", "discord-token", "telegram-token", "azure-storage-key",
        "square-secret", "url-password", "url-signature", "bearer-token", "basic-auth",
        "password", "secret", "api-key", "token",
    }
)  # fmt: skip
"""Every kind a marker can name."""

SHORT_MARKER: Final = "[REDACTED]"
"""Used instead of `[REDACTED:<kind>]` only where those would push a field past its length limit."""

_MARKER = re.compile(r"\[REDACTED(?::[a-z0-9-]{1,40})?\]")


def marker(kind: str) -> str:
    """What a secret of this kind is replaced with."""
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True)
class Redaction:
    """The turns with their secrets replaced, and how many of each kind were replaced."""

    turns: list[InteractionData]
    """New objects; the input is never mutated."""
    counts: dict[str, int]
    """kind -> how many replaced, e.g. {"aws-access-key": 1}; empty when none."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Finding:
    """Where a secret is in a text, and its kind; never its value."""

    start: int
    end: int
    kind: str


# ---------------------------------------------------------------------------------------------
# Rules: a detect-secrets regex and how its match becomes a span, or a detector of our own.

_ALNUM: Final = "A-Za-z0-9"
_TOKEN: Final = "A-Za-z0-9_-"

Tail = Literal["free", "extend", "reject"]


@dataclass(frozen=True)
class _PatternRule:
    """One compiled regex of a plugin, and how its matches become secret spans.

    `word` is the secret's alphabet (a regex character class body). A match (of the whole regex:
    a group's context is the regex's business) that continues a run of it on the left is not a
    secret (a key inside a longer identifier or hash); on the right,
    `tail` says whether a longer run is the same secret (extend: tokens longer than the plugin's
    fixed length), a different string (reject), or does not matter (free). `left` > 0 instead
    extends the span leftwards over `word` by up to that many characters, for regexes anchored on
    a literal in the middle of the secret. `accept` has the last word on the whole value (often
    the plugin's own regex or validity check). `needles`: skip the regex when none occurs in the
    lowercased text (ASCII, one byte a character: `in` is fastest there; a superset check).
    `fold`: the pattern is a case-insensitive one made case-sensitive (`_folded`), run on the
    ASCII-lowercased text; `re` runs those several times faster, and the indices are the same.
    """

    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    priority: int = 0
    needles: tuple[str, ...] = ()
    word: str = ""
    tail: Tail = "free"
    left: int = 0
    accept: Callable[[str], bool] | None = None
    fold: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "needles", tuple(n.lower() for n in self.needles))

    @functools.cached_property
    def _word(self) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
        """One character of `word`, and a run of them."""
        return (re.compile(f"[{self.word}]"), re.compile(f"[{self.word}]*+")) if self.word else None

    def spans(self, text: str, lower: str) -> Iterator[tuple[int, int]]:
        if self.needles and not any(needle in lower for needle in self.needles):
            return
        source = lower if self.fold else text
        char, run = self._word or (None, None)
        covered = 0  # the end of the last secret: a match inside it (an extended run) is not new
        for match in self.pattern.finditer(source):
            start, end = match.span(self.group)
            if start < covered or start == end:
                continue
            if char is not None and run is not None:
                if self.left:
                    floor = max(0, start - self.left - 1)
                    while start > floor and char.match(text, start - 1):
                        start -= 1
                elif self.group == 0 and start > 0 and char.match(text, start - 1):
                    continue
                if self.tail != "free" and char.match(text, end):
                    if self.tail == "reject":
                        continue
                    end = cast(re.Match[str], run.match(text, end)).end()
            if self.accept is None or self.accept(text[start:end]):
                covered = end
                yield start, end


class _Rule:
    """A detector that is more than one regex (keyword assignments, PEM blocks, headers)."""

    priority: int = 0

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, kind) of each secret; `lower` is `text` ASCII-lowercased, same indices."""
        raise NotImplementedError


@dataclass(frozen=True)
class _RuleSet:
    patterns: tuple[_PatternRule, ...]
    rules: tuple[_Rule, ...]


_BUILD_LOCK = threading.Lock()
_built: _RuleSet | None = None


def prepare() -> None:
    """Import detect-secrets and build the rules (~0.1-0.4 s, ~5 MiB), if not done yet."""
    _rule_set()


def prepared() -> bool:
    """Whether the rules are built (redacting no longer loads anything)."""
    return _built is not None


def _rule_set() -> _RuleSet:
    global _built
    rules = _built
    if rules is None:
        with _BUILD_LOCK:
            rules = _built
            if rules is None:
                rules = _built = _build()
    return rules


def _denylist(plugin: type) -> tuple[re.Pattern[str], ...]:
    """A plugin class's compiled regexes (an `abstractproperty` in its base, so untyped)."""
    return tuple(cast("Iterable[re.Pattern[str]]", getattr(plugin, "denylist")))  # noqa: B009


def _folded(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A case-insensitive pattern whose literals are lowercase, for ASCII-lowercased text."""
    source = pattern.pattern.removeprefix("(?i)")
    if not pattern.flags & re.IGNORECASE or re.search(r"(?<!\\)[A-Z]", source.replace("A-Z", "")):
        raise ValueError(f"not a case-insensitive pattern with lowercase literals: {source}")
    return re.compile(source, pattern.flags & ~re.IGNORECASE)


def _build() -> _RuleSet:
    shown = warnings.showwarning
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    if warnings.showwarning is not shown:
        # detect_secrets.core.log calls logging.captureWarnings(True) on import: the process's
        # warnings are not ours to reroute.
        logging.captureWarnings(False)

    # Detectors in detect-secrets' plugin style for what 1.5.0 lacks or gets wrong here.

    class _Detector(RegexBasedDetector):
        """RegexBasedDetector with its abstract properties typed as the class attributes that
        plugins make them (the one place the untyped base needs an ignore)."""

        secret_type: str = ""  # pyright: ignore[reportIncompatibleMethodOverride, reportAssignmentType]
        denylist: Sequence[re.Pattern[str]] = ()  # pyright: ignore[reportIncompatibleMethodOverride, reportAssignmentType]

    class GitHubFineGrainedTokenDetector(GitHubTokenDetector):
        """Fine-grained personal access tokens (github_pat_...), unknown to 1.5.0."""

        secret_type = "GitHub Fine-Grained Token"
        denylist = [re.compile(r"github_pat_[A-Za-z0-9_]{22,255}")]  # noqa: RUF012

    class StripeTestKeyDetector(StripeDetector):
        """Test-mode secret keys: they read and write a real account's test data."""

        secret_type = "Stripe Test Key"
        denylist = (re.compile(r"(?:r|s)k_test_[0-9a-zA-Z]{24}"),)

    class AnthropicKeyDetector(_Detector):
        """Anthropic API, admin and OAuth keys (sk-ant-api03-..., sk-ant-oat01-...)."""

        secret_type = "Anthropic API Key"
        denylist = [  # noqa: RUF012
            re.compile(r"sk-ant-(?<![A-Za-z0-9_-]sk-ant-)[a-z]{2,10}[0-9]{0,3}-[A-Za-z0-9_-]{20}")
        ]

    class OpenAIKeyDetector(OpenAIDetector):
        """OpenAI keys of every era. 1.5.0 knows only those with the T3BlbkFJ signature, and its
        `[A-Za-z0-9-_]*` before it makes a long run of key characters quadratic; this finds any
        `sk-` run, which `accept` then takes only with that signature, a sk-proj-/sk-svcacct-/
        sk-admin- prefix, or the legacy 48-character shape (not sk-ant-: Anthropic's)."""

        secret_type = "OpenAI Token"
        denylist = [re.compile(r"sk-(?<![A-Za-z0-9_-]sk-)(?!ant-)[A-Za-z0-9_-]{20}")]  # noqa: RUF012

    class GoogleApiKeyDetector(_Detector):
        """Google API keys (Maps, Gemini, Firebase): AIza + 35 characters, unknown to 1.5.0."""

        secret_type = "Google API Key"
        denylist = [re.compile(r"AIza(?<![A-Za-z0-9_-]AIza)[0-9A-Za-z_-]{35}")]  # noqa: RUF012

    class HuggingFaceTokenDetector(_Detector):
        """Hugging Face access tokens: hf_ + 34 letters, unknown to 1.5.0."""

        secret_type = "Hugging Face Token"
        denylist = [re.compile(r"hf_(?<![A-Za-z0-9_]hf_)[A-Za-z]{34}")]  # noqa: RUF012

    class JwtDetector(JwtTokenDetector):
        """1.5.0's regex ends in a lazy `*?`, so its match stops before the signature (redacting
        it would leave the signature behind), and its unanchored `eyJ...+\\.` rescans a long
        dot-less base64 run from every `eyJ` in it (quadratic). Anchored, bounded, and with the
        signature; `is_formally_valid` (the plugin's) still decides."""

        denylist = [  # noqa: RUF012
            re.compile(
                r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_=-]{1,10000}+"
                r"\.[A-Za-z0-9_=-]{1,50000}+(?:\.[A-Za-z0-9_-]{0,10000}+={0,2})?"
            )
        ]

    class NpmTokenDetector(NpmDetector):
        """1.5.0 wants a whole `//host/:_authToken=` line and takes the rest of it (`.+`), which
        rescans a long line from every `//`. Here: the granular token shape (npm_ + 36), and the
        value of `_authToken=` (group 1) up to a quote or space, unless it is `${NPM_TOKEN}`."""

        denylist = [  # noqa: RUF012
            re.compile(r"npm_(?<![A-Za-z0-9_]npm_)[A-Za-z0-9]{36}"),
            re.compile(r"""_authToken[ \t]*=[ \t]*["']?([^\s"'$]{8,4096}+)"""),
        ]

    class AzureAccountKeyDetector(AzureStorageKeyDetector):
        """1.5.0's regex without a group: redacting its match would eat `AccountKey=` too."""

        denylist = [re.compile(r"AccountKey=([a-zA-Z0-9+/=]{88})")]  # noqa: RUF012

    class AwsSecretKeyDetector(AWSKeyDetector):
        """`export AWS_SECRET_ACCESS_KEY=wJal...` and `aws_secret_access_key = wJal...`: 1.5.0
        wants the 40 characters quoted; env files, shells and ~/.aws/credentials do not quote."""

        denylist = (
            re.compile(
                r"""(?i)aws[A-Za-z0-9_.-]{0,20}?secret[A-Za-z0-9_.-]{0,20}?(?:\\?["'`]\]?|\])?"""
                r"""[ \t]*(?:=|:|=>)[ \t]*(?:\\?["'`])?([A-Za-z0-9/+]{40})"""
            ),
        )

    class SignedUrlDetector(_Detector):
        """The signature of a pre-signed URL (S3, GCS, Azure SAS, CloudFront) or an AWS SigV4
        Authorization header: whoever has the URL has the object until it expires."""

        secret_type = "Signed URL"
        denylist = [  # noqa: RUF012
            re.compile(
                r"[?&;,][ \t]*(?:X-Amz-Signature|X-Goog-Signature|Signature|signature|sig)="
                r"""([^&#\s"'<>\\,;]{16,4096}+)"""
            )
        ]

    class PrivateKeyBlockDetector(PrivateKeyDetector):
        """1.5.0 flags the BEGIN line only; redaction needs the whole block. This finds the BEGIN
        armor of any private key (also PKCS#8 `ENCRYPTED PRIVATE KEY`); `_PemBlockRule` extends
        it to the matching END line (or, if cut off, over the base64 lines that follow)."""

        denylist = [  # noqa: RUF012
            re.compile(
                r"-{4,5} ?BEGIN (?P<label>(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?) ?-{4,5}"
            )
        ]

    aws_id, aws_secret_quoted = _denylist(AWSKeyDetector)
    slack_token, slack_webhook = _denylist(SlackDetector)
    (discord,) = _denylist(DiscordBotTokenDetector)
    (telegram,) = _denylist(TelegramBotTokenDetector)
    (mailchimp,) = _denylist(MailchimpDetector)
    (basic_auth,) = _denylist(BasicAuthDetector)
    npm_token, npmrc = _denylist(NpmTokenDetector)
    formally_valid = cast(Callable[[str], bool], JwtTokenDetector.is_formally_valid)

    def is_jwt(value: str) -> bool:
        try:
            return formally_valid(value)
        except RecursionError:  # json.loads on a payload nested thousands deep: not a JWT
            return False

    def fullmatch(pattern: re.Pattern[str]) -> Callable[[str], bool]:
        return lambda value: pattern.fullmatch(value) is not None

    def openai(value: str) -> bool:
        return (
            "T3Blbk" + "FJ" in value  # the signature of OpenAIDetector's regex, without its `*`
            or value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"))
            or re.fullmatch(r"sk-[A-Za-z0-9]{48}", value) is not None
        )

    def hex_sid(value: str) -> bool:
        return all(c in "0123456789abcdef" for c in value[2:])

    def random_case(value: str) -> bool:
        """Random letters: `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` has 34 too, but 5 capitals."""
        upper = sum(c.isupper() for c in value)
        return 8 <= upper <= len(value) - 8

    def token_value(value: str) -> bool:
        return _plausible(value, "token", quoted=True)

    def plugin(
        kind: str, detector: type, *needles: tuple[str, ...], **how: Any
    ) -> list[_PatternRule]:
        """A rule per regex of the plugin; `needles`: one tuple for all, or one per regex."""
        regexes = _denylist(detector)
        if how.get("fold"):
            regexes = tuple(_folded(regex) for regex in regexes)
        each = needles if len(needles) == len(regexes) else needles * len(regexes)
        return [_PatternRule(kind, r, needles=n, **how) for r, n in zip(regexes, each, strict=True)]

    patterns: list[_PatternRule] = [
        # The secret is a token of a known shape.
        _PatternRule(
            "aws-access-key",
            aws_id,
            needles=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
            word=_ALNUM,
            tail="reject",
        ),
        *plugin(
            "github-token",
            GitHubTokenDetector,
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            word=_ALNUM + "_",
            tail="extend",
        ),
        *plugin(
            "github-token",
            GitHubFineGrainedTokenDetector,
            ("github_pat_",),
            word=_ALNUM + "_",
            tail="extend",
        ),
        *plugin(
            "gitlab-token",
            GitLabTokenDetector,
            ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-"),
            ("GR1348941",),
            ("glcbt-",),
            ("glimt-",),
            ("glptt-",),
            ("glagent-",),
            ("gloas-",),
            word=_TOKEN,
            tail="extend",
        ),
        _PatternRule(
            "slack-token",
            _folded(slack_token),
            needles=("xox",),
            word=_TOKEN,
            tail="extend",
            fold=True,
        ),
        _PatternRule("slack-webhook", slack_webhook, needles=("hooks.slack.com",)),
        *plugin("stripe-key", StripeDetector, ("k_live_",), word=_ALNUM, tail="extend"),
        *plugin("stripe-key", StripeTestKeyDetector, ("k_test_",), word=_ALNUM, tail="extend"),
        *plugin("anthropic-key", AnthropicKeyDetector, ("sk-ant-",), word=_TOKEN, tail="extend"),
        *plugin(
            "openai-key", OpenAIKeyDetector, ("sk-",), word=_TOKEN, tail="extend", accept=openai
        ),
        *plugin("google-api-key", GoogleApiKeyDetector, ("AIza",), word=_TOKEN, tail="reject"),
        *plugin(
            "huggingface-token",
            HuggingFaceTokenDetector,
            ("hf_",),
            word=_ALNUM + "_",
            tail="reject",
            accept=random_case,
        ),
        *plugin("jwt", JwtDetector, ("eyJ",), accept=is_jwt),
        *plugin("sendgrid-key", SendGridDetector, ("SG.",), word=_TOKEN, tail="reject"),
        *plugin(
            "pypi-token",
            PypiTokenDetector,
            ("pypi-AgEIcHlwaS5vcmc",),
            ("pypi-AgENdGVzdC5weXBpLm9yZw",),
            word=_TOKEN,
        ),
        _PatternRule("npm-token", npm_token, needles=("npm_",), word=_ALNUM + "_", tail="reject"),
        *plugin(
            "twilio-key",
            TwilioKeyDetector,
            ("AC",),
            ("SK",),
            word=_ALNUM,
            tail="reject",
            accept=hex_sid,
        ),
        # Anchored on the literal in the middle, then checked whole with the plugin's regex.
        _PatternRule(
            "mailchimp-key",
            re.compile(r"-us[0-9]{1,2}(?![0-9A-Za-z])"),
            needles=("-us",),
            word="0-9a-z",
            left=32,
            accept=fullmatch(mailchimp),
        ),
        _PatternRule(
            "discord-token",
            re.compile(r"\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])"),
            word=_TOKEN,
            left=26,
            accept=fullmatch(discord),
        ),
        _PatternRule(
            "telegram-token",
            re.compile(r":(?<=[0-9]:)[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
            word="0-9",
            left=10,
            accept=fullmatch(telegram),
        ),
        *plugin(
            "azure-storage-key",
            AzureAccountKeyDetector,
            ("AccountKey=",),
            group=1,
            word="A-Za-z0-9+/=",
            tail="extend",
        ),
        *plugin("square-secret", SquareOAuthDetector, ("sq0csp-",), word=_TOKEN, tail="reject"),
        # The secret is one part of a larger syntax.
        _PatternRule(
            "url-password",
            basic_auth,
            group=1,
            priority=1,
            needles=("://",),
            accept=lambda value: _plausible(value, "password", quoted=True),
        ),
        _PatternRule(
            "aws-secret-key",
            _folded(aws_secret_quoted),
            group=1,
            priority=1,
            needles=("aws",),
            fold=True,
        ),
        *plugin(
            "aws-secret-key",
            AwsSecretKeyDetector,
            ("aws",),
            group=1,
            priority=1,
            word="A-Za-z0-9/+",
            tail="reject",
            fold=True,
        ),
        *plugin(
            "url-signature",
            SignedUrlDetector,
            ("ignature=", "sig="),
            group=1,
            priority=1,
            accept=token_value,
        ),
        _PatternRule(
            "npm-token", npmrc, group=1, priority=1, needles=("_authToken",), accept=token_value
        ),
    ]
    (pem_begin,) = _denylist(PrivateKeyBlockDetector)
    rules: tuple[_Rule, ...] = (_PemBlockRule(pem_begin), _AuthorizationRule(), _KeywordRule())
    return _RuleSet(tuple(patterns), rules)


# ---------------------------------------------------------------------------------------------
# PEM blocks and Authorization headers.

_PEM_BODY = re.compile(
    r"(?:(?:\r?\n|\\r?\\n)[ \t]*(?:[A-Za-z0-9+/=]{1,100}|[A-Za-z-]{2,30}: ?[^\r\n\\]{0,200})"
    r"(?=\r?\n|\\r?\\n|\Z|[ \t\"'`]))+"
)
_MAX_PEM_CHARS = 200_000


class _PemBlockRule(_Rule):
    """A private key block, BEGIN to END; without an END (output cut off), its base64 lines."""

    priority = 0

    def __init__(self, begin: re.Pattern[str]) -> None:
        self._begin = begin

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        if "PRIVATE KEY" not in text:
            return
        ends: dict[str, list[tuple[int, int]]] = {}
        for begin in self._begin.finditer(text):
            label = begin.group("label")
            if label not in ends:  # one pass per label, so many BEGINs stay linear
                armor = re.compile(r"-{4,5} ?END " + re.escape(label) + r" ?-{4,5}")
                ends[label] = [m.span() for m in armor.finditer(text)]
            closes = ends[label]
            at = bisect.bisect_left(closes, (begin.end(), 0))
            if at < len(closes) and closes[at][0] - begin.end() <= _MAX_PEM_CHARS:
                yield begin.start(), closes[at][1], "private-key"
                continue
            body = _PEM_BODY.match(text, begin.end())
            if body is not None and sum(c.isalnum() for c in body.group()) >= 40:
                yield begin.start(), body.end(), "private-key"


_AUTH_HEADER = re.compile(
    r"""authorization(?:\\?["'`])?[ \t]*[:=][ \t]*(?:\\?["'`])?[ \t]*"""
    r"(?:(?P<scheme>bearer|token|bot|basic|apikey)[ \t]+)?(?P<value>[A-Za-z0-9._~+/=-]{8,4096}+)"
)
_BEARER = re.compile(r"Bearer[ \t]+(?P<value>[A-Za-z0-9._~+/-]{20,4096}+=*)")
_HEADER_END = re.compile(r"""[ \t]*(?:\\?["'`,;]|\r?\n|\\r?\\n|\Z)""")


def _basic_credentials(value: str) -> bool:
    """Whether `value` is base64 of `user:password`, as HTTP Basic credentials are."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded and len(decoded) >= 3


def _auth_value(scheme: str, value: str) -> str | None:
    """The kind of an Authorization header's credentials, or None if they are a placeholder."""
    if scheme == "basic":
        return "basic-auth" if _basic_credentials(value) else None
    return "bearer-token" if _plausible(value, "token", quoted=True) else None


class _AuthorizationRule(_Rule):
    """`Authorization: Bearer|Token|Bot|Basic <credentials>` in headers, curl, code and JSON
    (case-insensitive), and a bare `Bearer <token>`. Only the credentials are replaced."""

    priority = 1

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        if "authorization" in lower:
            for match in _AUTH_HEADER.finditer(lower):
                start, end = match.span("value")
                scheme = match.group("scheme") or ""
                if not scheme and not _HEADER_END.match(text, end):
                    continue  # `Authorization: AWS4-HMAC-SHA256 Credential=...`: not one value
                kind = _auth_value(scheme, text[start:end])
                if kind is not None:
                    yield start, end, kind
        if "Bearer" in text:
            for match in _BEARER.finditer(text):
                start, end = match.span("value")
                if _plausible(text[start:end], "token", quoted=True):
                    yield start, end, "bearer-token"


# ---------------------------------------------------------------------------------------------
# Keyword assignments: `password = "..."`, `export API_KEY=...`, `"token": "..."`, `--password x`.

_STEMS: Final = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "creds", "contrase")
_KEY_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-$ñÑ"
_KEY_RIGHT = re.compile(r"[A-Za-z0-9_.$ñÑ-]{0,64}")
_MAX_KEY: Final = 64
_MAX_VALUE: Final = 1000
# An unquoted value: up to a space, quote or bracket; `,;&` end it only before a space, the end
# or the next `name=` (query strings, connection strings), else they are part of it (`Tr0ub&3`).
_VALUE = (
    r"""(?:[^\s"'`\\,;&|<>(){}\[\]]++"""
    r"""|[,;&](?![\s"'`]|\Z|\\[nr"']|[A-Za-z_][\w.\[\]-]{0,64}=))++"""
)
_ASSIGN = re.compile(
    r"""
    (?P<close>\\?["'`]\]?|\]\\?["'`]?|\])?                  # the name's closing quote/bracket
    (?P<sp1>[ \t]*)
    (?P<op>
        :=|=>|===?|!==?
        |:[ \t]*[A-Za-z_][\w.\[\]|, ]{0,60}?[ \t]*=(?!=)(?=[ \t]*@?\\?["'`])   # `key: str = "x"`
        |=|:
    )
    (?P<sp2>[ \t]*)
    (?:
        @?(?P<q>\\?["'`])(?P<qv>[^\s"'`\\]++)(?P=q)
      | (?P<uv>"""
    + _VALUE
    + r""")
    )
    """,
    re.VERBOSE,
)
_OPERATOR = re.compile(r"""(?:\\?["'`]\]?|\]\\?["'`]?|\])?[ \t]*(?:[:=]|!=)""")
_FLAG_VALUE = re.compile(r" (?P<uv>(?![-,;&])" + _VALUE + ")")
_END_OF_LINE = re.compile(r"[ \t]*(?:[ \t]#[^\r\n]*)?(?:\r?\n|\\r?\\n|\Z)")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[^\W\d_A-Za-z]+")
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]")
_WORDY = re.compile(r"[a-z]+(?:[_.-][a-z]+)*(?:[_.-][a-z]?[0-9]{1,3})?")

_TRAILING_WORDS: Final = frozenset(
    {
        "value", "val", "str", "string", "plain", "plaintext", "raw", "b64", "base64", "hex",
        "bytes", "literal", "enc", "encoded", "base", "prod", "production", "dev", "staging",
        "live", "new", "old", "current", "confirm", "confirmation", "again", "repeat",
    }
)  # fmt: skip
_PASSWORD_ENDINGS: Final = (
    "password", "passwd", "passwort", "passphrase", "passcode", "contraseña", "contrasena",
)  # fmt: skip
_NOT_SECRET_TOKENS: Final = frozenset(
    {
        "page", "next", "prev", "continuation", "cursor", "sync", "cancellation", "pagination",
        "resume", "pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "stop", "start",
        "end", "max", "min", "num", "count", "input", "output", "prompt", "completion",
    }
)  # fmt: skip
_KEY_QUALIFIERS: Final = frozenset(
    {
        "secret", "access", "auth", "client", "account", "service", "master", "encryption",
        "signing", "app", "application", "license", "subscription", "db", "database", "admin",
        "shared", "webhook", "hmac", "consumer", "sas", "storage",
    }
)  # fmt: skip
_PASS_QUALIFIERS: Final = frozenset(
    {"db", "database", "key", "user", "root", "admin", "smtp", "ftp"}
)
_PLACEHOLDER_WORDS: Final = frozenset(
    {
        "none", "null", "nil", "undefined", "true", "false", "yes", "no", "on", "off",
        "required", "optional", "str", "string", "int", "bytes", "bool", "any", "text", "value",
        "values", "default", "empty", "blank", "unset", "test", "testing", "foo", "bar", "baz",
        "foobar", "pass", "hidden", "masked", "omitted", "todo", "tbd", "secretstr", "abc",
        "abcd", "secure", "sensitive", "unknown", "missing", "notset", "env", "environ", "void",
        "object", "dict", "list", "type", "number", "integer", "boolean", "uuid", "json",
    }
)  # fmt: skip
_PLACEHOLDER_PARTS: Final = (
    "password", "passwd", "passwort", "secret", "token", "apikey", "your", "xxxx", "example",
    "placeholder", "changeme", "redacted", "dummy", "sample", "notreal", "replace", "insert",
    "aws4request",  # a SigV4 credential scope: its access key id is redacted on its own
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def key_kind(name: str) -> str | None:
    """The kind of secret a value under this name is, or None if the name is not secret-like.

    `GITHUB_TOKEN` -> "token", `apiKey` -> "api-key", `db_pass` -> "password", `secret_key_base`
    -> "secret", `Authorization` -> "authorization" (its value is a scheme and credentials);
    `token_type`, `max_tokens`, `next_page_token`, `password_hint`, `primary_key` -> None.
    """
    if len(name) > _MAX_KEY:
        return None
    words = [w.lower() for w in _WORDS.findall(name)]
    while len(words) > 1 and (words[-1] in _TRAILING_WORDS or words[-1].isdigit()):
        words.pop()
    if not words:
        return None
    last = words[-1]
    prev = words[-2] if len(words) > 1 else ""
    joined = "".join(words)
    if joined.endswith(_PASSWORD_ENDINGS) or last in ("pwd", "pass"):
        return "password"
    if last.endswith("pass") and last[:-4] in _PASS_QUALIFIERS:
        return "password"  # dbpass, keypass
    if last.endswith("secret"):
        return "secret"
    if last.endswith("token"):
        return None if prev in _NOT_SECRET_TOKENS or last in ("nexttoken", "pagetoken") else "token"
    if joined.endswith("secretaccesskey"):
        return "aws-secret-key"
    if joined.endswith("apikey"):
        return "api-key"
    if last in ("privatekey", "privkey") or (last == "key" and prev in ("private", "priv")):
        return "private-key"
    if (last == "key" and prev in _KEY_QUALIFIERS) or (
        last.endswith("key") and last[:-3] in _KEY_QUALIFIERS
    ):
        return "secret"  # secret_key, SERVICE_KEY, masterkey
    if last in ("credential", "credentials", "creds", "auth"):
        return "secret"
    if last == "authorization":
        return "authorization"
    return None


def _random_segment(segment: str) -> bool:
    """Whether a part of a dotted value looks generated (`a0AfH6SMBx3`), not named (`environ`)."""
    mixed = segment != segment.lower() and segment != segment.upper()
    return mixed and (len(segment) >= 16 or any(c.isdigit() for c in segment))


def _plausible(value: str, kind: str, *, quoted: bool) -> bool:
    """Whether a value in a secret's place is one: not a placeholder, reference, path or type."""
    from detect_secrets.filters.heuristic import (
        is_not_alphanumeric_string,
        is_prefixed_with_dollar_sign,
        is_sequential_string,
        is_templated_secret,
    )

    if len(value) < (4 if kind == "password" else 8) or len(value) >= _MAX_VALUE:
        return False
    if (
        "[REDACTED" in value
        or is_templated_secret(value)  # {x}, <x>, ${x}
        or is_prefixed_with_dollar_sign(value)  # $DB_PASSWORD
        or is_not_alphanumeric_string(value)  # ****, 12345678
        or is_sequential_string(value)  # abcdefgh
    ):
        return False
    if value[0] in "%<{[" or any(p in value for p in ("${", "{{", "$(", "%(", "...", "…")):
        return False
    if value.startswith(("/", "~/", "./", "../", "http://", "https://", "file:")):
        return False
    if _WINDOWS_PATH.match(value):
        return False
    lower = value.lower()
    if len(set(lower)) <= 2:
        return False  # xxxx, abab
    alnum = "".join(c for c in lower if c.isalnum())
    if alnum in _PLACEHOLDER_WORDS or any(part in alnum for part in _PLACEHOLDER_PARTS):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_upper = any(c.isupper() for c in value)
    has_lower = any(c.islower() for c in value)
    random_looking = (has_digit and (has_upper or has_lower)) or (
        has_upper and has_lower and len(value) >= 16 and "_" not in value
    )
    if kind != "password" and _WORDY.fullmatch(value):
        return False  # basic_auth_v2, prod-db-2, us-east-1: names, not generated tokens
    if not quoted:
        if _DOTTED.fullmatch(value) and not any(map(_random_segment, value.split("."))):
            return False  # self.password, process.env.API_KEY, settings.SECRET_KEY
        if value.replace("_", "").isalpha() and not random_looking:
            return False  # a variable (`password=password`) or a type (`api_key: str`)
    return kind == "password" or random_looking


class _KeywordRule(_Rule):
    """A value assigned to a secret-like name, in code, shell, env, JSON, YAML, INI or a URL.

    Quoted values (`password = "x"`, `"token": "x"`, `api_key: str = "x"`) are literals. Unquoted
    ones count in `NAME=value` (env files, shell, `--password=x`, query strings, connection
    strings), in `NAME: value` / `NAME = value` only where the value ends the line (YAML, INI,
    headers; `Your password: must be long` is prose), and in `--password value`. An unquoted value
    that is a bare word, a dotted name or a call is a reference, not a secret.
    """

    priority = 2

    def find(self, text: str, lower: str) -> Iterator[tuple[int, int, str]]:
        hits: list[int] = []
        for stem in _STEMS:
            hit = lower.find(stem)
            while hit >= 0:
                hits.append(hit)
                hit = lower.find(stem, hit + len(stem))
        hits.sort()
        seen: set[int] = set()  # the ends of names looked at (`secret_key` has two stems)
        covered = 0  # the end of the last value looked at: a name inside it is part of it
        for hit in hits:
            if hit < covered:
                continue
            value = self._at(text, lower, hit, seen)
            if value is not None:
                start, covered, kind = value
                if kind is not None:
                    yield start, covered, kind

    def _at(
        self, text: str, lower: str, hit: int, seen: set[int]
    ) -> tuple[int, int, str | None] | None:
        """The value assigned to the name at `hit` and its kind (None: not a secret), if any."""
        right = _KEY_RIGHT.match(text, hit)
        end = right.end() if right else hit
        if end - hit >= _MAX_KEY:
            return None
        while end > hit and text[end - 1] in ".-":
            end -= 1
        if end in seen:
            return None
        seen.add(end)
        # Cheap checks first: most stems (`tokens`, `the key`) are followed by no operator.
        flag = _OPERATOR.match(text, end) is None
        floor = hit - _MAX_KEY if hit > _MAX_KEY else 0
        if flag and (not text.startswith(" ", end) or lower.rfind("--", floor, hit) < 0):
            return None
        start = floor + len(text[floor:hit].rstrip(_KEY_CHARS))
        if start == floor and floor > 0 and text[floor - 1] in _KEY_CHARS:
            return None  # inside a long run (a hash, base64): not a name
        while start < hit and text[start] in ".-$":
            start += 1
        kind = key_kind(text[start:end])
        if kind is None or kind == "authorization":
            return None
        window = end + _MAX_VALUE + 100  # a longer value is no secret of ours
        if flag:  # `--password value`
            value = _FLAG_VALUE.match(text, end, window)
            if value is None or not text.startswith("--", start - 2):
                return None
            value_start, value_end = value.span("uv")
            quoted = False
        else:
            assign = _ASSIGN.match(text, end, window)
            if assign is None:
                return None
            if assign.group("qv") is not None:
                value_start, value_end = assign.span("qv")
                quoted = True
            else:
                value_start, value_end = assign.span("uv")
                quoted = False
                op = assign.group("op")
                tight = op == "=" and not (assign.group("sp1") or assign.group("sp2"))
                if (
                    not tight
                    and not (op in (":", "=", ":=") and _END_OF_LINE.match(text, value_end))
                ) or text.startswith(("(", "["), value_end):
                    return value_start, value_end, None  # prose; password=getpass()
        if not _plausible(text[value_start:value_end], kind, quoted=quoted):
            return value_start, value_end, None
        return value_start, value_end, kind


# ---------------------------------------------------------------------------------------------
# The scan.


def find_secrets(text: str) -> list[Finding]:
    """Where the secrets in `text` are: in order, none overlapping; positions and kinds only.

    Where detectors overlap, the more specific wins (a known token shape over a structural rule
    such as `Authorization:` over a keyword assignment); existing markers are never findings.
    """
    if not text:
        return []
    rules = _rule_set()
    lower = _ascii_lower(text)
    levels: list[list[tuple[int, int, str | None]]] = [[], [], [], []]
    if "[REDACTED" in text:  # idempotent: a marker is never a secret, nor part of one
        levels[0] = [(m.start(), m.end(), None) for m in _MARKER.finditer(text)]
    for rule in rules.patterns:
        levels[rule.priority + 1] += ((s, e, rule.kind) for s, e in rule.spans(text, lower))
    for custom in rules.rules:
        levels[custom.priority + 1] += custom.find(text, lower)
    taken: list[tuple[int, int, str | None]] = []  # sorted by start, disjoint
    for level in levels:
        level.sort(key=lambda c: (c[0], -c[1]))
        chosen: list[tuple[int, int, str | None]] = []
        at, end = 0, 0
        for candidate in level:
            if candidate[0] < end:
                continue  # overlaps one chosen at this level
            while at < len(taken) and taken[at][1] <= candidate[0]:
                at += 1
            if at < len(taken) and taken[at][0] < candidate[1]:
                continue  # overlaps one chosen at a more specific level
            chosen.append(candidate)
            end = candidate[1]
        taken = sorted(taken + chosen, key=lambda c: c[0])  # two sorted runs: linear
    return [Finding(start, end, kind) for start, end, kind in taken if kind is not None]


def _ascii_lower(text: str) -> str:
    """`text` with A-Z lowercased and every character at its index (str.lower can move them)."""
    if text.isascii():
        return text.lower()
    return text.encode("ascii", "replace").decode("ascii").lower()


def _apply(text: str, found: Sequence[Finding], *, short: bool = False) -> str:
    parts: list[str] = []
    last = 0
    for finding in found:
        parts += (text[last : finding.start], SHORT_MARKER if short else marker(finding.kind))
        last = finding.end
    parts.append(text[last:])
    return "".join(parts)


def redact_text(text: str, *, limit: int | None = None) -> tuple[str, Counter[str]]:
    """`text` with its secrets replaced, and how many of each kind; at most `limit` characters.

    Where the markers would make it longer than `limit`, `[REDACTED]` is used instead, and if
    even that is too long the text is cut at `limit` (after every secret in it is gone).
    """
    found = find_secrets(text)
    counts = Counter(f.kind for f in found)
    if not found:
        return text, counts
    redacted = _apply(text, found)
    if limit is not None and len(redacted) > limit:
        redacted = _apply(text, found, short=True)[:limit]
    return redacted, counts


# ---------------------------------------------------------------------------------------------
# Turns and tool data. A publish's strings are scanned as one text joined by newlines (no rule
# matches across a newline but a PEM block, whose strings are then scanned alone): one pass per
# regex for the whole publish, however many small strings its tool data holds.


def find_secrets_in(texts: Sequence[str]) -> list[list[Finding]]:
    """`find_secrets` for each text, as if each were scanned alone, in one pass over them all."""
    if len(texts) <= 1:
        return [find_secrets(text) for text in texts]
    starts: list[int] = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 1
    per_text: list[list[Finding]] = [[] for _ in texts]
    alone: set[int] = set()
    for finding in find_secrets("\n".join(texts)):
        at = bisect.bisect_right(starts, finding.start) - 1
        start = starts[at]
        if finding.end > start + len(texts[at]):  # across texts: scan those alone
            alone.update(range(at, bisect.bisect_left(starts, finding.end)))
            continue
        per_text[at].append(Finding(finding.start - start, finding.end - start, finding.kind))
    for at in alone:
        per_text[at] = find_secrets(texts[at])
    return per_text


_NAME_KEYS: Final = ("name", "Name", "key", "Key", "header", "parameter", "variable")
_AUTH_SCHEME = re.compile(
    r"(?i)[ \t]*(?:(?P<scheme>bearer|token|bot|basic|apikey)[ \t]+)?"
    r"(?P<value>[A-Za-z0-9._~+/=-]{8,4096})[ \t]*"
)


def _collect(data: Any, texts: list[str]) -> None:
    """Every string in a JSON value (dict keys too), in the order `_rebuild` takes them."""
    if isinstance(data, str):
        texts.append(data)
    elif isinstance(data, list):
        for item in cast(list[Any], data):
            _collect(item, texts)
    elif isinstance(data, dict):
        for key, value in cast(dict[Any, Any], data).items():
            if isinstance(key, str):
                texts.append(key)
            _collect(value, texts)


class _Scanned:
    """The texts of a publish in order, each with its findings; `take` hands them out in turn."""

    def __init__(self, texts: list[str]) -> None:
        self._texts = texts
        self._findings = find_secrets_in(texts)
        self._next = 0
        self.counts: Counter[str] = Counter()

    def take(self, limit: int | None = None) -> tuple[str, list[Finding]]:
        """The next text redacted (within `limit` characters), and what was found in it."""
        text, found = self._texts[self._next], self._findings[self._next]
        self._next += 1
        if not found:
            return text, found
        self.counts.update(f.kind for f in found)
        redacted = _apply(text, found)
        if limit is not None and len(redacted) > limit:
            redacted = _apply(text, found, short=True)[:limit]
        return redacted, found

    def take_text(self) -> str:
        """`take()[0]`, for the common case of no findings, without building a tuple."""
        if not self._findings[self._next]:
            self._next += 1
            return self._texts[self._next - 1]
        return self.take()[0]

    def take_raw(self) -> tuple[str, list[Finding]]:
        """The next text as it is, and what was found in it (nothing counted)."""
        text, found = self._texts[self._next], self._findings[self._next]
        self._next += 1
        return text, found


def _under_secret_name(value: str, kind: str, scanned: _Scanned) -> str:
    """A string stored under a secret-like name: what the scan found in it, else all of it."""
    text, found = scanned.take_raw()
    if found:
        scanned.counts.update(f.kind for f in found)
        return _apply(text, found)
    if kind == "authorization":
        match = _AUTH_SCHEME.fullmatch(value)
        secret_kind = match and _auth_value((match.group("scheme") or "").lower(), match["value"])
        if match is None or not secret_kind:
            return value
        scanned.counts[secret_kind] += 1
        start, end = match.span("value")
        return value[:start] + marker(secret_kind) + value[end:]
    stripped = value.strip()
    if kind == "password" and " " in stripped:  # a passphrase: a literal, under this name
        secret = len(stripped) >= 8 and "[REDACTED" not in stripped
    else:
        secret = " " not in stripped and _plausible(stripped, kind, quoted=True)
    if not secret:
        return value
    scanned.counts[kind] += 1
    return marker(kind)


def _rebuild(data: Any, scanned: _Scanned) -> Any:
    """A copy of a JSON value with its secrets replaced (new dicts and lists throughout)."""
    if isinstance(data, str):
        return scanned.take_text()
    if isinstance(data, list):
        return [
            scanned.take_text() if type(item) is str else _rebuild(item, scanned)
            for item in cast(list[Any], data)
        ]
    if not isinstance(data, dict):
        return data
    items = cast(dict[Any, Any], data)
    # {"name": "DB_PASSWORD", "value": "..."}: env lists, form fields, header lists.
    pair_kind: str | None = None
    value_key = (
        "value"
        if type(items.get("value")) is str
        else "Value"
        if type(items.get("Value")) is str
        else None
    )
    if value_key is not None:
        for name_key in _NAME_KEYS:
            name = items.get(name_key)
            if isinstance(name, str) and (pair_kind := key_kind(name)) is not None:
                break
    out: dict[Any, Any] = {}
    for key, value in items.items():
        new_key = key
        kind: str | None = None
        if isinstance(key, str):
            kind = pair_kind if key == value_key and pair_kind else key_kind(key)
            new_key = scanned.take_text()
            while new_key in out or (new_key != key and new_key in items):
                new_key += "_"  # two keys redacted alike must not overwrite each other
        if type(value) is str:
            out[new_key] = (
                scanned.take_text() if kind is None else _under_secret_name(value, kind, scanned)
            )
        else:
            out[new_key] = _rebuild(value, scanned)
    return out


def _max_length(model: type[InteractionData] | type[ToolUsed], field: str) -> int:
    """A string field's max_length, read from the model so that a change there is followed."""
    for meta in model.model_fields[field].metadata:
        limit = getattr(meta, "max_length", None)
        if isinstance(limit, int):
            return limit
    raise LookupError(f"{model.__name__}.{field} has no max_length")


_TURN_FIELDS: Final = {
    name: _max_length(InteractionData, name)
    for name in (
        "role",
        "content",
        "expert_content",
        "user_action_description",
        "interacted_image_url",
    )
}
_TOOL_NAME_LIMIT: Final = _max_length(ToolUsed, "tool_name")
_STATUS_LIMIT: Final = _max_length(ToolUsed, "status")


def _turn_texts(turn: InteractionData, texts: list[str]) -> None:
    texts += (cast(str, getattr(turn, name)) for name in _TURN_FIELDS)
    for tool in turn.tools_used:
        texts += (tool.tool_name, tool.status)
        _collect(tool.tool_data, texts)


def _redacted_turn(turn: InteractionData, scanned: _Scanned) -> InteractionData:
    update = {name: scanned.take(limit)[0] for name, limit in _TURN_FIELDS.items()}
    tools: list[ToolUsed] = []
    for tool in turn.tools_used:
        name = scanned.take(_TOOL_NAME_LIMIT)[0]
        status = scanned.take(_STATUS_LIMIT)[0]
        rebuilt = _rebuild(tool.tool_data, scanned)
        values = dict(tool.__dict__, tool_name=name, status=status, tool_data=rebuilt)
        tools.append(ToolUsed.model_construct(set(tool.model_fields_set), **values))
    # model_construct keeps which fields were set (model_copy(update=) marks every updated one),
    # and the new lists and dicts share nothing mutable with the input.
    values = dict(turn.__dict__, tools_used=tools, **update)
    return InteractionData.model_construct(set(turn.model_fields_set), **values)


def redact_turns(turns: Sequence[InteractionData]) -> Redaction:
    """Copies of the turns with every secret replaced by `[REDACTED:<kind>]`, and the counts.

    Synchronous and CPU-bound (see bench/redaction.py for MB/s): run big publishes in a worker
    thread. Thread-safe.
    """
    texts: list[str] = []
    for turn in turns:
        _turn_texts(turn, texts)
    scanned = _Scanned(texts)
    redacted = [_redacted_turn(turn, scanned) for turn in turns]
    return Redaction(turns=redacted, counts=dict(sorted(scanned.counts.items())))
