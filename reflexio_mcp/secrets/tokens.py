"""The rules built from detect-secrets plugins: tokens of a known shape (a vendor's prefix and
alphabet), and secrets that are one part of a larger syntax (a URL's password or signature, an
AWS secret key's assignment, an .npmrc `_authToken=`). The plugins' compiled regexes are read
through `rules.denylist`; where 1.5.0 lacks a shape or gets one wrong for redaction, a subclass
of its plugin here says why. Its scanning entry points are not used (see `scanner`).

Imports detect-secrets (~10 ms without requests, see scanner): only the rule build
(`scanner.prepare`) imports this module.

detect-secrets plugins left off, and why:
- Base64HighEntropyString, HexHighEntropyString: they flag any quoted high-entropy string: git
  SHAs, sha256/sha512 digests in lockfiles, base64 in code, ids. Those fill coding transcripts,
  and redacting them destroys memories. Entropy-like checks are used only on values already
  under a secret-like name (`SECRET_KEY=AbCd...` vs `api_key=api_key`).
- KeywordDetector's regexes: they take the rest of the line as the secret (`password: please reset
  it` gives "please reset it"), find only the first hit per regex per line, choose quoted or
  unquoted forms by file name, and have no "token". Its keyword list is kept (plus token,
  credentials, auth) in a rule that checks placeholders, references and type hints
  (`assignments`).
- ArtifactoryDetector: its `AP[0-9A-F]...` password pattern matches all-caps identifiers.
- IbmCloudIamDetector, IbmCosHmacDetector, SoftlayerDetector, CloudantDetector: assignment
  patterns with empty or two-letter prefixes (`key = <44 chars>`) that fire on digests and name
  them IBM keys; the keyword rule covers real assignments.
- IPPublicDetector: a public IP address is not a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, cast

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
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from reflexio_mcp.secrets.names import plausible
from reflexio_mcp.secrets.rules import ALNUM, TOKEN, PatternRule, denylist, folded

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


_formally_valid = cast(Callable[[str], bool], JwtTokenDetector.is_formally_valid)


def _is_jwt(value: str) -> bool:
    try:
        return _formally_valid(value)
    except RecursionError:  # json.loads on a payload nested thousands deep: not a JWT
        return False


def _fullmatch(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: pattern.fullmatch(value) is not None


def _openai(value: str) -> bool:
    return (
        "T3Blbk" + "FJ" in value  # the signature of OpenAIDetector's regex, without its `*`
        or value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-"))
        or re.fullmatch(r"sk-[A-Za-z0-9]{48}", value) is not None
    )


def _hex_sid(value: str) -> bool:
    return all(c in "0123456789abcdef" for c in value[2:])


def _random_case(value: str) -> bool:
    """Random letters: `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` has 34 too, but 5 capitals."""
    upper = sum(c.isupper() for c in value)
    return 8 <= upper <= len(value) - 8


def _token_value(value: str) -> bool:
    return plausible(value, "token", quoted=True)


def _plugin(kind: str, detector: type, *needles: tuple[str, ...], **how: Any) -> list[PatternRule]:
    """A rule per regex of the plugin; `needles`: one tuple for all, or one per regex."""
    regexes = denylist(detector)
    if how.get("fold"):
        regexes = tuple(folded(regex) for regex in regexes)
    each = needles if len(needles) == len(regexes) else needles * len(regexes)
    return [PatternRule(kind, r, needles=n, **how) for r, n in zip(regexes, each, strict=True)]


def token_rules() -> list[PatternRule]:
    """The secret is a token of a known shape."""
    aws_id, _ = denylist(AWSKeyDetector)
    slack_token, slack_webhook = denylist(SlackDetector)
    (discord,) = denylist(DiscordBotTokenDetector)
    (telegram,) = denylist(TelegramBotTokenDetector)
    (mailchimp,) = denylist(MailchimpDetector)
    npm_token, _ = denylist(NpmTokenDetector)
    return [
        PatternRule(
            "aws-access-key",
            aws_id,
            needles=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
            word=ALNUM,
            tail="reject",
        ),
        *_plugin(
            "github-token",
            GitHubTokenDetector,
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            word=ALNUM + "_",
            tail="extend",
        ),
        PatternRule(
            "github-token",
            re.compile(r"gh[pousr]_[A-Za-z0-9]{20,35}"),
            needles=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            word=ALNUM + "_",
            tail="extend",
        ),  # cut short (a learning quoting it, a line cut to fit): most of a token is a secret
        *_plugin(
            "github-token",
            GitHubFineGrainedTokenDetector,
            ("github_pat_",),
            word=ALNUM + "_",
            tail="extend",
        ),
        *_plugin(
            "gitlab-token",
            GitLabTokenDetector,
            ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-"),
            ("GR1348941",),
            ("glcbt-",),
            ("glimt-",),
            ("glptt-",),
            ("glagent-",),
            ("gloas-",),
            word=TOKEN,
            tail="extend",
        ),
        PatternRule(
            "slack-token",
            folded(slack_token),
            needles=("xox",),
            word=TOKEN,
            tail="extend",
            fold=True,
        ),
        PatternRule("slack-webhook", slack_webhook, needles=("hooks.slack.com",)),
        *_plugin("stripe-key", StripeDetector, ("k_live_",), word=ALNUM, tail="extend"),
        *_plugin("stripe-key", StripeTestKeyDetector, ("k_test_",), word=ALNUM, tail="extend"),
        *_plugin("anthropic-key", AnthropicKeyDetector, ("sk-ant-",), word=TOKEN, tail="extend"),
        *_plugin(
            "openai-key", OpenAIKeyDetector, ("sk-",), word=TOKEN, tail="extend", accept=_openai
        ),
        *_plugin("google-api-key", GoogleApiKeyDetector, ("AIza",), word=TOKEN, tail="reject"),
        *_plugin(
            "huggingface-token",
            HuggingFaceTokenDetector,
            ("hf_",),
            word=ALNUM + "_",
            tail="reject",
            accept=_random_case,
        ),
        *_plugin("jwt", JwtDetector, ("eyJ",), accept=_is_jwt),
        *_plugin("sendgrid-key", SendGridDetector, ("SG.",), word=TOKEN, tail="reject"),
        *_plugin(
            "pypi-token",
            PypiTokenDetector,
            ("pypi-AgEIcHlwaS5vcmc",),
            ("pypi-AgENdGVzdC5weXBpLm9yZw",),
            word=TOKEN,
        ),
        PatternRule("npm-token", npm_token, needles=("npm_",), word=ALNUM + "_", tail="reject"),
        *_plugin(
            "twilio-key",
            TwilioKeyDetector,
            ("AC",),
            ("SK",),
            word=ALNUM,
            tail="reject",
            accept=_hex_sid,
        ),
        # Anchored on the literal in the middle, then checked whole with the plugin's regex.
        PatternRule(
            "mailchimp-key",
            re.compile(r"-us[0-9]{1,2}(?![0-9A-Za-z])"),
            needles=("-us",),
            word="0-9a-z",
            left=32,
            accept=_fullmatch(mailchimp),
        ),
        PatternRule(
            "discord-token",
            re.compile(r"\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])"),
            word=TOKEN,
            left=26,
            accept=_fullmatch(discord),
        ),
        PatternRule(
            "telegram-token",
            re.compile(r":(?<=[0-9]:)[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
            word="0-9",
            left=10,
            accept=_fullmatch(telegram),
        ),
        *_plugin(
            "azure-storage-key",
            AzureAccountKeyDetector,
            ("AccountKey=",),
            group=1,
            word="A-Za-z0-9+/=",
            tail="extend",
        ),
        *_plugin("square-secret", SquareOAuthDetector, ("sq0csp-",), word=TOKEN, tail="reject"),
    ]


def syntax_rules() -> list[PatternRule]:
    """The secret is one part of a larger syntax (a known token shape inside it wins)."""
    _, aws_secret_quoted = denylist(AWSKeyDetector)
    (basic_auth,) = denylist(BasicAuthDetector)
    _, npmrc = denylist(NpmTokenDetector)
    return [
        PatternRule(
            "url-password",
            basic_auth,
            group=1,
            priority=1,
            needles=("://",),
            accept=lambda value: plausible(value, "password", quoted=True),
        ),
        PatternRule(
            "aws-secret-key",
            folded(aws_secret_quoted),
            group=1,
            priority=1,
            needles=("aws",),
            fold=True,
        ),
        *_plugin(
            "aws-secret-key",
            AwsSecretKeyDetector,
            ("aws",),
            group=1,
            priority=1,
            word="A-Za-z0-9/+",
            tail="reject",
            fold=True,
        ),
        *_plugin(
            "url-signature",
            SignedUrlDetector,
            ("ignature=", "sig="),
            group=1,
            priority=1,
            accept=_token_value,
        ),
        PatternRule(
            "npm-token", npmrc, group=1, priority=1, needles=("_authToken",), accept=_token_value
        ),
    ]
