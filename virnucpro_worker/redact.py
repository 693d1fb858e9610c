"""Passwords out of URLs, before a URL reaches a log line, an error, run.json or a row."""

from __future__ import annotations

import re

# scheme://user:password@host... (also a password with no user: scheme://:password@host)
_PASSWORD = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:)(?P<password>[^@]*)(?=@)")
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`."""
    url = _PASSWORD.sub(lambda match: match.group("head") + "***", url)
    return _QUERY_PASSWORD.sub(lambda match: match.group("key") + "***", url)


def redact_text(text: str, *urls: str | None) -> str:
    """`text` with each of `urls` (and its password, wherever it appears) redacted."""
    for url in filter(None, urls):
        text = text.replace(url, redact_url(url))
        password = _PASSWORD.match(url)
        if password and password.group("password"):
            text = text.replace(password.group("password"), "***")
    return text


# user:password@ anywhere in a text, with or without a scheme (a URL mistyped is still a secret)
_ANY_PASSWORD = re.compile(
    r"(?P<head>(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?[^\s/@:'\"]*:)(?P<password>[^\s'\"/]+)(?=@)"
)


def redact_passwords(text: str) -> str:
    """`text` (an error message, a command line) with every password of every URL in it
    replaced by `***`."""
    text = _ANY_PASSWORD.sub(lambda match: match.group("head") + "***", text)
    return _QUERY_PASSWORD.sub(lambda match: match.group("key") + "***", text)
