"""Credentials kept out of what the registry shows: URLs and database errors with their secrets as `***`.

A SQLAlchemy URL carries a secret in its userinfo (`postgresql+psycopg://user:SECRET@host/db`) or in its query,
where libpq takes any of its connection keywords (`?password=SECRET`, `?sslpassword=SECRET`) and other drivers
take theirs (`passwd`, `pwd`, a token). A driver's error message may quote those values back.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL

HIDDEN = "***"
_SECRET_KEY = re.compile(r"pass(word|wd)|pwd|secret|token|api_?key|credential", re.IGNORECASE)
"""Query keys whose value is a credential: libpq's password and sslpassword, other drivers' passwd, pwd, tokens.
(libpq's passfile and sslkey name files, whose contents never travel in the URL.)"""
_KEY_VALUE = re.compile(r"""\b(\w*(?:pass(?:word|wd)|pwd|secret|token|api_?key|credential)\w*)(\s*[=:]\s*)"""
                        r"""('[^']*'|"[^"]*"|[^\s&;,'"]+)""", re.IGNORECASE)
"""`key=value` (or `key: value`) with a secret key, as a DSN, a query string or an ODBC string writes it."""
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]*@", re.IGNORECASE)
"""The password of a URL's userinfo (`scheme://user:password@`)."""


def is_secret_key(key: str) -> bool:
    """Whether a URL query key holds a credential."""
    return _SECRET_KEY.search(key) is not None


def secret_values(url: URL) -> tuple[str, ...]:
    """The URL's credentials: its password and the value of every secret query key."""
    values = [url.password] if url.password else []
    for key, value in url.query.items():
        if is_secret_key(key):
            values += [value] if isinstance(value, str) else list(value)
    return tuple(str(v) for v in values if v)


def shown_url(url: URL) -> str:
    """The URL as it may be shown: its password and every secret query value replaced by `***`."""
    placeholder = "mbpohiddenvalue"  # rendering would percent-encode `***` itself
    query = {key: placeholder if is_secret_key(key) else value for key, value in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True).replace(placeholder, HIDDEN)


def masked(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every credential hidden: the given secret values (as written and URL-encoded), and any
    `password=...`-like pair or `scheme://user:password@` userinfo it contains."""
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, HIDDEN)
    text = _KEY_VALUE.sub(lambda m: m.group(1) + m.group(2) + HIDDEN, text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}:{HIDDEN}@", text)
