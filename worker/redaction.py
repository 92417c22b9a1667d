"""Secret redaction for text and JSON-like data before Postmaster stores it.

Secrets become `[REDACTED:<kind>]` so an operator can tell what was there without seeing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from functools import lru_cache
from itertools import pairwise
from typing import NamedTuple

REDACTED = "[REDACTED:{kind}]"
BY_KEY = "[REDACTED:by-key]"


def placeholder(kind: str) -> str:
    """The text a secret of `kind` is replaced with, e.g. `[REDACTED:jwt]`."""
    return REDACTED.format(kind=kind)


# One small pattern per rule, each beginning with a literal, rather than one alternation:
# `re` finds a literal prefix with a fast C scan (~1 µs per KB) but tries every branch of an
# alternation at every position; the single combined pattern measured ~1 ms per KB, and ~60
# µs even with its branches arranged for `re`'s first-character filter.
class _Rule(NamedTuple):
    kind: str
    pattern: re.Pattern[str]
    # What replaces a match: the placeholder alone, or a function keeping the name around it.
    repl: str | Callable[[re.Match[str]], str]
    # Searched on the lower-cased text before `pattern` (compiled IGNORECASE, which disables
    # the literal scan) runs at all; None for case-sensitive rules.
    gate: re.Pattern[str] | None
    # Plain substring that must be present, for a rule whose pattern cannot start with one.
    needle: str | None


def _keep_around(mark: str, groups: tuple[str, ...]) -> Callable[[re.Match[str]], str]:
    # Replace only the first of `groups` that took part; the name in front stays readable.
    def repl(match: re.Match[str]) -> str:
        for group in groups:
            value_start, value_end = match.span(group)
            if value_start != -1:
                start, end = match.span()
                return match.string[start:value_start] + mark + match.string[value_end:end]
        return mark

    return repl


def _shape(
    kind: str, pattern: str, groups: tuple[str, ...] = (), needle: str | None = None
) -> _Rule:
    mark = placeholder(kind)
    repl = _keep_around(mark, groups) if groups else mark
    return _Rule(kind, re.compile(pattern), repl, None, needle)


def _named(kind: str, pattern: str, groups: tuple[str, ...]) -> _Rule:
    # Written in lower case: the gate runs it on lower-cased text, fast; only text that
    # really holds a match pays for the IGNORECASE substitution on the original.
    compiled = re.compile(pattern, re.IGNORECASE)
    return _Rule(kind, compiled, _keep_around(placeholder(kind), groups), re.compile(pattern), None)


# Every value pattern refuses to start on a placeholder, so redacting twice changes nothing
# and the second pass counts zero replacements.
_FRESH = r"(?!\[redacted:)"

# `name = value`, `name: value`, `"name": "value"`, `'name' => 'value'`, and the same with
# escaped quotes (JSON inside a JSON string). Spaces only, never newlines, so a name at the
# end of a line cannot swallow the first word of the next one. Atomic, so that after a
# placeholder the "=" of "=>" cannot be retried alone with ">" taken for the value.
_SEP = r"""\\?["']?[ \t]*(?>=>|[:=])[ \t]*"""

# One group per quoting style because each ends on different characters. A bare value:
# - is not a JSON/Python literal (true, null, None) nor a call or subscript in source code
#   (`api_key=os.environ.get(...)` in a traceback line), which are not secrets;
# - cannot start with a backslash, or the escaped quote in front of a placeholder would
#   pass for a new value;
# - keeps `,` `;` `&` inside it (`Tr0ub4dor&3`) and stops at one only where a list goes on
#   (`pw=x, user=y`, `Pwd=x;Database=y`, `?token=x&page=2`), so none of it leaks.
_BARE_END = r"[,;&](?:\s|\Z|[a-z_][\w.-]*[=:])"
_VALUE = (
    rf"""(?:\\?"(?P<dq>{_FRESH}(?:[^"\\\n]|\\[^"\n])+)"""
    rf"""|'(?P<sq>{_FRESH}[^'\n]+)"""
    rf"""|(?P<bare>{_FRESH}(?!(?:true|false|null|none|nil)\b)(?![\w.]+[(\[])"""
    rf"""[^\s"',;&\\][^\s"',;&]*+(?:(?!{_BARE_END})[,;&][^\s"',;&]*+)*))"""
)
# A bare number under a token/key name is a count or a limit (max_token=4096), not a key.
_KEY_VALUE = _VALUE.replace("(?P<bare>", r"(?P<bare>(?![0-9]+\b)")
_VALUE_GROUPS = ("dq", "sq", "bare")

# Shapes first, names second: `token=ghp_…` is then reported as a github-token, and a PEM
# block under `private_key:` goes whole before the name rule could take its first line.
# Within each group the order only matters where two rules can hit the same text.
_RULES: tuple[_Rule, ...] = (
    _shape(
        "private-key",
        # An unterminated block (truncated log, cut attachment) still hides everything
        # after BEGIN: the key material is what matters, not the END line.
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)",
    ),
    _shape(
        "slack-webhook",
        # The path is the credential, so the whole URL goes, scheme included.
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{8,}",
        needle="hooks.slack.com/",
    ),
    _shape(
        "url-password",
        # Anchored on "://" rather than on the scheme. The user part cannot hold "/", so
        # `https://host/a:b@c` is no match; the password runs to the last "@" of the
        # authority, for an unencoded "@" in it, but never past a quote, which would carry
        # it into the next string of compact JSON.
        r"://(?<=[A-Za-z0-9]://)[^\s:/?#@\[\]\"'<>]*:"
        r"(?P<value>(?!\[REDACTED:)[^\s/?#\"'<>]+)@",
        ("value",),
    ),
    # Lookbehinds come after the first literal so that `re` can still scan for it.
    _shape(
        "aws-access-key",
        r"A(?<![A-Za-z0-9]A)(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])",
    ),
    _shape(
        "github-token",
        r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9_]{36,}|ithub_pat_[A-Za-z0-9_]{82,})",
    ),
    _shape("slack-token", r"x(?<![A-Za-z0-9-]x)(?:ox[abposr]|app)-[A-Za-z0-9-]{10,}"),
    _shape("anthropic-key", r"sk-ant-(?<![A-Za-z0-9_-]sk-ant-)[A-Za-z0-9_-]{20,}"),
    _shape(
        "openai-key",
        # The left boundary keeps ids like "task-…" out. A real key has a digit or a capital
        # within its first few characters with near certainty; hyphenated lowercase prose
        # ("sk-learn-compatible-estimators") has none.
        r"sk-(?<![A-Za-z0-9_-]sk-)(?:proj-|svcacct-|admin-)?(?=[a-z_-]*[A-Z0-9])"
        r"[A-Za-z0-9_-]{20,}",
    ),
    # Empty signature allowed: an unsigned (alg=none) token still carries its claims. The
    # left boundary and possessive runs keep "eyJeyJeyJ…" linear: a match can only start
    # where a run starts, and a run is never re-scanned.
    _shape(
        "jwt",
        r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]++\.eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+",
    ),
    # Laravel-style APP_KEY=base64:...; "data:...;base64," has a comma and is not hit.
    _shape("base64-key", r"base64:(?P<value>[A-Za-z0-9+/]{32,}={0,2})", ("value",)),
    # Names have no left boundary (DB_PASSWORD, x-api-key, old_password all count); the
    # separator after the name is what keeps "reset your password" and "passwords" intact.
    _named(
        "aws-secret-key",
        # 40 base64-ish characters are too common to redact on their own (hashes, ids):
        # only the name in front makes them a secret. Matching from "secret" covers
        # aws_secret_access_key, AWS_SECRET_KEY and SecretAccessKey alike.
        r"secret[_-]?(?:access[_-]?)?key"
        + _SEP
        + r"""\\?["']?(?P<value>[a-z0-9/+]{40})(?![a-z0-9/+=])""",
        ("value",),
    ),
    _named(
        "authorization",
        # The scheme word is kept and the credential after it goes. Atomic, so the scheme
        # is never given back and taken for the credential once that is a placeholder.
        r"authorization"
        + _SEP
        + r"""\\?["']?(?>(?:(?:basic|bearer|token|digest|negotiate|ntlm)[ \t]+)?)"""
        + rf"""(?P<value>{_FRESH}[^\s"',;\\]+)""",
        ("value",),
    ),
    _named("password", r"p(?:ass(?:word|wd|phrase)|wd)" + _SEP + _VALUE, _VALUE_GROUPS),
    _named("secret", r"secret(?:[_-]?key)?" + _SEP + _KEY_VALUE, _VALUE_GROUPS),
    # `token` but not `tokens`/`tokenizer`: LLM logs are full of token counts.
    _named("secret", r"token" + _SEP + _KEY_VALUE, _VALUE_GROUPS),
    _named("secret", r"api[_-]?key" + _SEP + _KEY_VALUE, _VALUE_GROUPS),
    _named("secret", r"access[_-]?key" + _SEP + _KEY_VALUE, _VALUE_GROUPS),
    _named("secret", r"private[_-]?key" + _SEP + _KEY_VALUE, _VALUE_GROUPS),
    _named(
        "bearer-token",
        # The token must hold a digit or a base64/url-safe symbol, so prose such as "the
        # bearer instrument." survives; "." and "-" alone do not count (sentence ends,
        # hyphenated words).
        r"bearer(?<![a-z0-9_]bearer)[ \t]+(?P<value>(?=[a-z.-]*[0-9_~+/=])[a-z0-9._~+/=-]{8,})",
        ("value",),
    ),
)


# No rule matches fewer characters ("pwd=x"). Most envelope values are short ids and
# statuses, and skipping them saves the ~20 pattern calls each.
_SHORTEST_SECRET = 5


# Short strings found clean: ids, types, file names and MIME types repeat parcel after parcel,
# and each costs ~20 pattern calls (3 µs) to find clean again. Only clean ones are kept, so no
# secret stays in it; it is emptied when full rather than kept in order (a dict's get and set
# are atomic under the GIL, so threads share it without a lock).
_CLEAN: dict[str, None] = {}
_CLEAN_MAX_LENGTH = 128
_CLEAN_MAX_ENTRIES = 8192


def redact_text_counted(text: str) -> tuple[str, int]:
    """Redact secrets in `text`; also return how many were replaced."""
    if len(text) < _SHORTEST_SECRET:
        return text, 0
    short = len(text) <= _CLEAN_MAX_LENGTH
    if short and text in _CLEAN:
        return text, 0
    redacted, total = _redact(text)
    if short and not total:
        if len(_CLEAN) >= _CLEAN_MAX_ENTRIES:
            _CLEAN.clear()
        _CLEAN[text] = None
    return redacted, total


def _redact(text: str) -> tuple[str, int]:
    total = 0
    lowered: str | None = None
    for rule in _RULES:
        if rule.gate is not None:
            if lowered is None:
                lowered = text.lower()
            if not rule.gate.search(lowered):
                continue
        elif rule.needle is not None and rule.needle not in text:
            continue
        text, count = rule.pattern.subn(rule.repl, text)
        if count:
            total += count
            lowered = None
    return text, total


def redact_text(text: str) -> str:
    """Return `text` with every recognised secret replaced by `[REDACTED:<kind>]`."""
    return redact_text_counted(text)[0]


# Words a key is split into: "xApiKey" -> x, Api, Key; "AWS_SECRET" -> AWS, SECRET.
_KEY_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "accesskey",
        "privatekey",
        "clientsecret",
        "authorization",
        # Headers are redacted by key too, and a session cookie is as good as a password.
        "cookie",
    }
)
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key")})


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (`password`, `x-api-key`, `clientSecret`, ...).

    Whole words only: `max_tokens` and `tokenizer` are not secrets, `access_token` is.
    """
    # Cached: parcels repeat the same handful of keys thousands of times a second.
    words = [word.lower() for word in _KEY_WORD.findall(key)]
    if any(word in _SECRET_WORDS for word in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in pairwise(words))


@lru_cache(maxsize=4096)
def _redact_key_text(key: str) -> str:
    # Cached: parcels repeat the same handful of keys thousands of times a second.
    return redact_text(key)


def redact_key(key: object, taken: Container[object] = ()) -> object:
    """A mapping key with any secret in it replaced; ` #2`, ` #3`… keep two redacted keys apart."""
    if not isinstance(key, str):
        return key
    shown = _redact_key_text(key)
    if shown == key or shown not in taken:
        return shown
    n = 2
    while f"{shown} #{n}" in taken:
        n += 1
    return f"{shown} #{n}"


def redact_value(value: object) -> object:
    """Redact every string inside JSON-like data, mapping keys too; values under secret-named
    keys go whole.

    Dicts, lists and tuples are rebuilt (the input is not modified); a key that holds a secret
    is redacted like any string (a key that was a token is itself a leak); numbers, booleans
    and None pass through.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out: dict[object, object] = {}
        for key, item in value.items():
            shown = (
                BY_KEY
                if isinstance(item, str) and item and isinstance(key, str) and is_secret_key(key)
                else redact_value(item)
            )
            out[redact_key(key, out)] = shown
        return out
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_value(item) for item in value)
    return value
