"""Secret redaction: what must go, what must stay, and redact_value on nested data."""

from __future__ import annotations

import copy
import json

import pytest

from worker.redaction import (
    BY_KEY,
    is_secret_key,
    placeholder,
    redact_text,
    redact_text_counted,
    redact_value,
)

# Fake secrets of the right shape. Assembled from pieces so that secret scanners (push
# protection, pre-commit hooks) do not flag this file.
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_TEMP_ID = "ASIA" + "Y34FZKBOKMUTVV7A"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GH_CLASSIC = "ghp_" + "x1Y2z3" * 6
GH_OAUTH = "gho_" + "Q9w8E7r6" * 4 + "T5y4"
GH_FINE = "github_pat_" + "11ABCDEFG0" + "a1B2c3D4e5" * 7 + "_f6G7h8i9j0k1"
SLACK_BOT = "xo" + "xb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_APP = "xa" + "pp-1-A0123456789-1234567890123-0123456789abcdef"
SLACK_HOOK = "https://hooks.slack" + ".com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
OPENAI = "sk-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6l"
OPENAI_PROJECT = "sk-proj-" + "Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe" * 3
ANTHROPIC = "sk-ant-" + "api03-" + "AbC1dEf2-gHi3_jKl4" * 5
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
BEARER = "3f9a8b7c6d5e4f3a2b1c0d9e"
BASIC = "c2Vlcjpodw50ZXIyLXByb2Q="
APP_KEY = "kV7b3Xo1pQ9sT2uW5yZ8aC0dF4gH6jL1mN3qR5tV7xY="
PEM_BODY = "MIIEowIBAAKCAQEA7bq9sT2uW5yZ8aC0dF4gH6jL1mN3qR5tV7xY\nkV7b3Xo1pQ9sT2uW5yZ8aC0dF4g=\n"
RSA_KEY = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "-----END RSA PRIVATE KEY-----"
OPENSSH_KEY = (
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n" + PEM_BODY + "-----END OPENSSH PRIVATE KEY-----"
)
PGP_KEY = (
    "-----BEGIN PGP "
    + "PRIVATE KEY BLOCK-----\n\n"
    + PEM_BODY
    + "-----END PGP PRIVATE KEY BLOCK-----"
)
SHA256 = "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea"


def mark(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# (text, secret, kind): the output must be the text with exactly the secret swapped for the
# placeholder, so the surrounding text is checked too.
TRUE_POSITIVES = [
    pytest.param(f"using key {AWS_ID} for uploads", AWS_ID, "aws-access-key", id="aws-id-prose"),
    pytest.param(
        f'{{"AccessKeyId": "{AWS_TEMP_ID}", "Region": "eu-west-1"}}',
        AWS_TEMP_ID,
        "aws-access-key",
        id="aws-temporary-id-json",
    ),
    pytest.param(
        f"[default]\naws_access_key_id = {AWS_ID}\n", AWS_ID, "aws-access-key", id="aws-id-ini"
    ),
    pytest.param(
        f"[default]\naws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1\n",
        AWS_SECRET,
        "aws-secret-key",
        id="aws-secret-ini",
    ),
    pytest.param(
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        AWS_SECRET,
        "aws-secret-key",
        id="aws-secret-env",
    ),
    pytest.param(
        f'{{"Credentials": {{"SecretAccessKey": "{AWS_SECRET}", "Expiration": "2024"}}}}',
        AWS_SECRET,
        "aws-secret-key",
        id="aws-secret-json",
    ),
    pytest.param(
        f"GITHUB_TOKEN={GH_CLASSIC} make release", GH_CLASSIC, "github-token", id="github-env"
    ),
    pytest.param(
        f"remote: https://{GH_CLASSIC}@github.com/seer/ops.git",
        GH_CLASSIC,
        "github-token",
        id="github-in-clone-url",
    ),
    pytest.param(f"oauth token was {GH_OAUTH}.", GH_OAUTH, "github-token", id="github-oauth"),
    pytest.param(
        f"fine-grained: {GH_FINE}\nexpires in 30 days", GH_FINE, "github-token", id="github-pat"
    ),
    pytest.param(f"slack bot {SLACK_BOT} posted", SLACK_BOT, "slack-token", id="slack-bot"),
    pytest.param(f"app-level token {SLACK_APP}", SLACK_APP, "slack-token", id="slack-app"),
    pytest.param(
        f'{{"notify": {{"webhook": "{SLACK_HOOK}", "channel": "#ops"}}}}',
        SLACK_HOOK,
        "slack-webhook",
        id="slack-webhook-json",
    ),
    pytest.param(
        f"POST {SLACK_HOOK} -> 200 OK", SLACK_HOOK, "slack-webhook", id="slack-webhook-log"
    ),
    pytest.param(
        f"openai.AuthenticationError: Incorrect API key provided: {OPENAI}.",
        OPENAI,
        "openai-key",
        id="openai-legacy",
    ),
    pytest.param(
        f"client = OpenAI(api_key=os.environ.get('X', '{OPENAI_PROJECT}'))",
        OPENAI_PROJECT,
        "openai-key",
        id="openai-project",
    ),
    pytest.param(
        f'{{"llm": {{"provider": "anthropic", "key": "{ANTHROPIC}"}}}}',
        ANTHROPIC,
        "anthropic-key",
        id="anthropic",
    ),
    pytest.param(f"session cookie sid={JWT}; Path=/", JWT, "jwt", id="jwt-cookie"),
    pytest.param(
        f'{{"id_token": "{JWT}", "expires_in": 3600}}', JWT, "jwt", id="jwt-json-named-field"
    ),
    pytest.param(
        f"retrying with Bearer {BEARER} after 401", BEARER, "bearer-token", id="bearer-prose"
    ),
    pytest.param(
        f"GET /v1/parcels HTTP/1.1\r\nHost: seer\r\nAuthorization: Basic {BASIC}\r\n\r\n",
        BASIC,
        "authorization",
        id="authorization-basic-header",
    ),
    pytest.param(
        f'{{"headers": {{"Authorization": "Bearer {BEARER}", "Accept": "*/*"}}}}',
        BEARER,
        "authorization",
        id="authorization-bearer-json",
    ),
    pytest.param(
        "DATABASE_URL=postgres://seer:S3cr3t!pw@db.internal:5432/seer?sslmode=require",
        "S3cr3t!pw",
        "url-password",
        id="url-password-postgres",
    ),
    pytest.param(
        "connecting to redis://:hunter2hunter2@cache:6379/0 ...",
        "hunter2hunter2",
        "url-password",
        id="url-password-no-user",
    ),
    pytest.param(
        "broker amqp://guest:p@ss@w0rd@rabbit:5672// refused",
        "p@ss@w0rd",
        "url-password",
        id="url-password-unencoded-at",
    ),
    pytest.param(
        '{"url":"https://bot:tok3n-value@api.example.com","email":"ops@example.com"}',
        "tok3n-value",
        "url-password",
        id="url-password-compact-json",
    ),
    pytest.param(f"deploy key:\n{RSA_KEY}\nend of config\n", RSA_KEY, "private-key", id="pem-rsa"),
    pytest.param(f"{OPENSSH_KEY}\n", OPENSSH_KEY, "private-key", id="pem-openssh"),
    pytest.param(f"signing with\n{PGP_KEY}", PGP_KEY, "private-key", id="pem-pgp-block"),
    pytest.param(
        json.dumps({"private_key": RSA_KEY, "user": "deploy"}),
        json.dumps(RSA_KEY)[1:-1],
        "private-key",
        id="pem-in-json-string",
    ),
    pytest.param(
        "traceback:\n" + RSA_KEY[:80],
        RSA_KEY[:80],
        "private-key",
        id="pem-unterminated",
    ),
    pytest.param(
        f"APP_ENV=production\nAPP_KEY=base64:{APP_KEY}\nAPP_DEBUG=false\n",
        APP_KEY,
        "base64-key",
        id="base64-app-key",
    ),
    pytest.param(
        "login failed: password=hunter2 user=bob", "hunter2", "password", id="password-equals"
    ),
    pytest.param(
        '{"username": "bob", "password": "correct horse battery staple"}',
        "correct horse battery staple",
        "password",
        id="password-json-with-spaces",
    ),
    pytest.param(
        "db:\n  host: db.internal\n  password: Tr0ub4dor&3\n  port: 5432\n",
        "Tr0ub4dor&3",
        "password",
        id="password-yaml",
    ),
    pytest.param(
        "DB_PASSWORD='s3cr3t-Value' ./run.sh", "s3cr3t-Value", "password", id="password-env"
    ),
    pytest.param(
        "$conn = ['passwd' => 'pa55wd!', 'host' => 'x'];",
        "pa55wd!",
        "password",
        id="password-php-arrow",
    ),
    pytest.param(
        "Driver={ODBC};Server=db;Uid=sa;Pwd=Odbc-P4ss;Database=seer",
        "Odbc-P4ss",
        "password",
        id="password-odbc",
    ),
    # The shortest possible match: guards the length short-cut in redact_text_counted.
    pytest.param("pwd=Q", "Q", "password", id="shortest-match"),
    pytest.param(
        r'{"body": "{\"password\":\"n3sted\",\"user\":\"x\"}"}',
        "n3sted",
        "password",
        id="password-escaped-json",
    ),
    pytest.param(
        "Error: invalid PASSWORD: Wr0ngPass", "Wr0ngPass", "password", id="password-upper-colon"
    ),
    pytest.param(
        "login as bob with password=s3cr3t-v4l, then retry",
        "s3cr3t-v4l",
        "password",
        id="password-comma",
    ),
    pytest.param(
        "GET /callback?code=xyz&access_token=at-0123456789&page=2",
        "at-0123456789",
        "secret",
        id="token-query-stops-at-next-param",
    ),
    pytest.param(
        "oauth client_secret=a1b2c3d4e5f6g7h8 scope=read",
        "a1b2c3d4e5f6g7h8",
        "secret",
        id="client-secret",
    ),
    pytest.param(
        "curl -H 'x-api-key: 9c1f00aa-key-value' https://api.example.com",
        "9c1f00aa-key-value",
        "secret",
        id="api-key-header",
    ),
    pytest.param(
        "SECRET_KEY = 'django-insecure-8f#k2$z!q'",
        "django-insecure-8f#k2$z!q",
        "secret",
        id="django",
    ),
    pytest.param(
        "refresh failed: refresh_token=rt.0123456789abcdef&grant_type=refresh_token",
        "rt.0123456789abcdef",
        "secret",
        id="token-in-query",
    ),
    pytest.param(
        "İstanbul office: API_KEY=ünïcode-K3y done",
        "ünïcode-K3y",
        "secret",
        id="unicode-around",
    ),
]


@pytest.mark.parametrize(("text", "secret", "kind"), TRUE_POSITIVES)
def test_secret_is_replaced_and_the_rest_kept(text: str, secret: str, kind: str) -> None:
    assert secret in text
    redacted, count = redact_text_counted(text)
    assert secret not in redacted
    assert redacted == text.replace(secret, mark(kind))
    assert count == text.count(secret)
    assert redact_text(text) == redacted


@pytest.mark.parametrize(("text", "secret", "kind"), TRUE_POSITIVES)
def test_redaction_is_idempotent(text: str, secret: str, kind: str) -> None:
    once = redact_text(text)
    assert redact_text_counted(once) == (once, 0)


def test_multi_line_traceback_with_several_secrets() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/srv/seer/worker/postmaster.py", line 212, in deliver\n'
        "    client.send(parcel)\n"
        f"ConnectionError: amqp://seer:Br0ker-Pw@rabbit:5672/ refused; headers={{'Authorization':"
        f" 'Bearer {BEARER}'}}\n"
        f"env: AWS_ACCESS_KEY_ID={AWS_ID} AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
        f"note: digest {SHA256} kept for retry\n"
    )
    redacted, count = redact_text_counted(text)
    for secret in ("Br0ker-Pw", BEARER, AWS_ID, AWS_SECRET):
        assert secret not in redacted
    assert count == 4
    assert redacted.splitlines()[:3] == text.splitlines()[:3]
    assert redacted.splitlines()[-1] == text.splitlines()[-1]
    assert "AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-key]" in redacted


def test_shape_wins_over_name_for_the_kind() -> None:
    # The specific kind tells the operator more than the generic "secret".
    assert redact_text(f"token={GH_CLASSIC}") == f"token={mark('github-token')}"
    assert redact_text(f"password: {JWT}") == f"password: {mark('jwt')}"


FALSE_POSITIVES = [
    pytest.param("task 123e4567-e89b-12d3-a456-426614174000 queued", id="uuid"),
    pytest.param("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)", id="git-sha"),
    pytest.param(f"stored {SHA256} (1.2 MB)", id="sha256"),
    pytest.param(f'{{"digest": "{SHA256}", "size": 1234}}', id="sha256-json"),
    pytest.param(f"sha256:{SHA256}", id="sha256-prefixed"),
    pytest.param(f"image seer/worker@sha256:{SHA256}", id="docker-digest"),
    pytest.param(f"artifact fe://artifacts/by-task/t1/{SHA256}/report.pdf ready", id="fe-uri"),
    pytest.param(
        f'{{"artifacts": ["fe://artifacts/by-task/t1/{SHA256}/report.pdf"]}}', id="fe-uri-json"
    ),
    pytest.param("mail ops@seer.example and alice.smith+ops@example.co.uk", id="emails"),
    pytest.param("Contact: ops@seer.example", id="email-after-colon"),
    pytest.param("GET https://example.com:8443/api/v1/items?id=42&sort=asc#top", id="url-port"),
    pytest.param("see https://example.com/a:b@c and http://localhost:8000/", id="url-colon-path"),
    pytest.param("probe http://[::1]:8080/status ok", id="url-ipv6"),
    pytest.param("clone ssh://git@github.com:22/seer/ops.git", id="url-user-no-password"),
    pytest.param("open https://user@example.com/path", id="url-user-only"),
    pytest.param("Please reset your password using the link below.", id="password-prose"),
    pytest.param("Password must be at least 12 characters long.", id="password-sentence"),
    pytest.param("the password-protected archive; passwords do not match", id="password-words"),
    pytest.param("KeyError: 'password'", id="password-keyerror"),
    pytest.param("password: null, password=None, pwd = ''", id="password-empty-values"),
    pytest.param("pip install sk-learn; sk-1 is fine", id="sk-learn"),
    pytest.param("uses sk-learn-compatible-estimators-for-everything", id="sk-hyphenated-prose"),
    pytest.param("task-Abcdefghij1234567890abcdKLMN failed", id="task-id-with-sk"),
    pytest.param("The payload is base64 encoded, not encrypted.", id="base64-word"),
    pytest.param("icon data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB", id="data-uri"),
    pytest.param("at 2024-05-01T12:34:56.789+00:00 and 2024-05-01 12:34:56Z", id="iso-time"),
    pytest.param(
        "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        id="long-words",
    ),
    pytest.param("max_tokens=4096 tokens: 1532 tokenizer=cl100k_base token: 12", id="llm-tokens"),
    pytest.param("key: value; the key=primary; public_key_id=42", id="key-alone"),
    pytest.param("the bearer instrument. Bearer bonds matured.", id="bearer-prose"),
    pytest.param("Authorization failed for user bob", id="authorization-prose"),
    pytest.param("is_secret=true secretary: Bob", id="secret-words"),
    pytest.param("AKIA alone, AKIAshort", id="aws-prefix-only"),
    pytest.param("header eyJhbGciOiJIUzI1NiJ9 without claims", id="jwt-header-only"),
    pytest.param("version v1.2.3-rc.1+build.5 on x86_64", id="semver"),
    pytest.param(
        'Traceback (most recent call last):\n  File "/srv/seer/worker/cas.py", line 12, in put\n'
        "ValueError: digest mismatch\n",
        id="plain-traceback",
    ),
    pytest.param(
        '    conn = connect(password=os.environ["DB_PASSWORD"], api_key=settings.get("k"))',
        id="source-line-calls",
    ),
    pytest.param("", id="empty"),
    pytest.param("ok", id="short"),
]


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_harmless_text_is_unchanged(text: str) -> None:
    assert redact_text_counted(text) == (text, 0)


def test_placeholder_format() -> None:
    assert placeholder("aws-access-key") == "[REDACTED:aws-access-key]"
    assert BY_KEY == "[REDACTED:by-key]"


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "DB_PASSWORD",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "clientSecret",
        "AWS_SECRET_ACCESS_KEY",
        "token",
        "access_token",
        "refreshToken",
        "X-Auth-Token",
        "api_key",
        "apikey",
        "apiKey",
        "APIKey",
        "x-api-key",
        "X-Api-Key",
        "access_key",
        "accessKey",
        "private_key",
        "privateKey",
        "Authorization",
        "proxy-authorization",
        "Cookie",
    ],
)
def test_secret_named_key_is_redacted_whole(key: str) -> None:
    assert is_secret_key(key)
    assert redact_value({key: "plain words", "other": "plain words"}) == {
        key: BY_KEY,
        "other": "plain words",
    }


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "tokens",
        "tokenizer",
        "key",
        "public_key",
        "keyboard",
        "monkey",
        "author",
        "passage",
        "secretary",
        "digest",
        "task_id",
    ],
)
def test_ordinary_key_is_not_redacted_whole(key: str) -> None:
    assert not is_secret_key(key)
    assert redact_value({key: "plain words"}) == {key: "plain words"}


def test_redact_value_nested_structures() -> None:
    envelope = {
        "task": "t1",
        "body": f"deploy with password={'hunter2'} now",
        "metadata": {
            "attempt": 3,
            "ratio": 0.5,
            "urgent": True,
            "parent": None,
            "artifacts": [f"fe://artifacts/by-task/t1/{SHA256}/report.pdf"],
            "notes": ["fine", f"leaked {AWS_ID}", {"api_key": "k-123", "digest": SHA256}],
            "tuple": ("a", f"Bearer {BEARER}"),
        },
        "headers": {"Authorization": f"Bearer {BEARER}", "Content-Type": "text/plain"},
    }
    original = copy.deepcopy(envelope)
    assert redact_value(envelope) == {
        "task": "t1",
        "body": f"deploy with password={mark('password')} now",
        "metadata": {
            "attempt": 3,
            "ratio": 0.5,
            "urgent": True,
            "parent": None,
            "artifacts": [f"fe://artifacts/by-task/t1/{SHA256}/report.pdf"],
            "notes": [
                "fine",
                f"leaked {mark('aws-access-key')}",
                {"api_key": BY_KEY, "digest": SHA256},
            ],
            "tuple": ("a", f"Bearer {mark('bearer-token')}"),
        },
        "headers": {"Authorization": BY_KEY, "Content-Type": "text/plain"},
    }
    assert envelope == original


def test_by_key_only_replaces_non_empty_strings() -> None:
    value = {
        "password": "",
        "token": None,
        "secret": 12345,
        "api_key": True,
        "access_token": {"value": f"{GH_CLASSIC}", "note": "plain"},
        "private_key": [f"{RSA_KEY}"],
    }
    assert redact_value(value) == {
        "password": "",
        "token": None,
        "secret": 12345,
        "api_key": True,
        # Containers under a secret name are walked like any other.
        "access_token": {"value": mark("github-token"), "note": "plain"},
        "private_key": [mark("private-key")],
    }


def test_dict_keys_are_redacted_too() -> None:
    assert redact_value({AWS_ID: "x", 7: "password=hunter2", "plain": 1}) == {
        mark("aws-access-key"): "x",
        7: f"password={mark('password')}",
        "plain": 1,
    }


def test_two_keys_that_redact_alike_both_survive() -> None:
    other = "AKIA" + "Z" * 16
    shown = redact_value({AWS_ID: 1, other: 2})
    assert shown == {mark("aws-access-key"): 1, mark("aws-access-key") + " #2": 2}


@pytest.mark.parametrize("value", [0, 1.5, True, False, None, 10**30])
def test_non_str_scalars_pass_through(value: object) -> None:
    assert redact_value(value) is value


def test_redact_value_is_idempotent() -> None:
    value = {
        "headers": {"X-Api-Key": "k", "Accept": "json"},
        "body": f"{JWT} and postgres://u:pw-1@h/db",
        "list": [f"Bearer {BEARER}", {"password": "x"}],
    }
    once = redact_value(value)
    assert redact_value(once) == once
    assert JWT not in json.dumps(once)
    assert "pw-1" not in json.dumps(once)


def test_counted_reports_zero_and_same_text_when_clean() -> None:
    text = f"stored {SHA256} for task t1"
    assert redact_text_counted(text) == (text, 0)


# Long runs an attacker or a bad attachment could send. Each rule must scan them in linear
# time (a left boundary or possessive run per pattern); a quadratic pattern would make this
# test take seconds instead of milliseconds. Only the result is asserted.
PATHOLOGICAL = [
    pytest.param("eyJ" * 20_000, "eyJ" * 20_000, id="eyJ-run"),
    pytest.param("a://b:" * 20_000, "a://b:" * 20_000, id="url-run"),
    pytest.param("-----BEGIN " * 20_000, "-----BEGIN " * 20_000, id="pem-begin-run"),
    pytest.param("Bearer " * 20_000, "Bearer " * 20_000, id="bearer-run"),
    pytest.param("sk-" * 20_000, "sk-" * 20_000, id="sk-run"),
    pytest.param("a" * 100_000, "a" * 100_000, id="long-word"),
    # Token-shaped all the way, so one placeholder for the whole run.
    pytest.param("ghp_" * 20_000, mark("github-token"), id="ghp-run"),
    pytest.param("xoxb-" * 20_000, mark("slack-token"), id="xoxb-run"),
    pytest.param("password=" + "a" * 100_000, f"password={mark('password')}", id="long-value"),
]


@pytest.mark.parametrize(("text", "expected"), PATHOLOGICAL)
def test_pathological_runs(text: str, expected: str) -> None:
    assert redact_text(text) == expected
