"""The secret scanner: finds secrets in text and replaces them with `[REDACTED:<kind>]` markers.
A leaf: it imports nothing of reflexio-mcp (walking a publish's turns is
`reflexio_mcp.core.turn_secrets`' job).

Coding-agent transcripts carry API keys, tokens and passwords (a pasted `.env`, `curl -H
"Authorization: ..."`, tool output echoing a config). Only each secret's characters are replaced
(`export AWS_SECRET_ACCESS_KEY=wJal...` becomes `export
AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key]`); `scanner` says how it scans, and each rule
family's module what it finds.

Kinds (stable slugs: the `<kind>` of the marker and the keys of every count of them):

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
"""

from reflexio_mcp.secrets.headers import auth_value
from reflexio_mcp.secrets.names import key_kind, plausible
from reflexio_mcp.secrets.scanner import (
    KINDS,
    SHORT_MARKER,
    Finding,
    apply,
    find_secrets,
    find_secrets_in,
    marker,
    prepare,
    prepare_in_background,
    prepared,
    redact_text,
)

__all__ = [
    "KINDS",
    "SHORT_MARKER",
    "Finding",
    "apply",
    "auth_value",
    "find_secrets",
    "find_secrets_in",
    "key_kind",
    "marker",
    "plausible",
    "prepare",
    "prepare_in_background",
    "prepared",
    "redact_text",
]
