"""Secrets: the guard that keeps tokens and passwords out of the settings files and out of
every message (reading them is `tasks.credentials`'s: that is I/O, and mappings does none).

* `looks_like_secret(text)`: a token or password rather than a name;
* `env_name` / `block_name`: the checks of the settings that *name* where a secret is (an
  environment variable, a Prefect Secret block), refusing the secret itself written there;
* `secret_scan(document)`: a key that would hold a secret (`token:`, `password:` ...), refused;
* `without_secrets(problems, documents)`: the last guard of every loader error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticCustomError

from mappings.errors import Problem
from mappings.schema import CUSTOM_FIELD_KEY
from mappings.yamlsource import Document, path_text, walk

if TYPE_CHECKING:
    pass

__all__ = [
    "SECRET_KEYS",
    "block_name",
    "env_name",
    "hide_secrets",
    "looks_like_secret",
    "secret_scan",
    "shown_value",
    "without_secrets",
]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
#: Keys that would hold a secret: never allowed in a settings file.
SECRET_KEYS = frozenset(
    {"token", "api_token", "apitoken", "api_key", "apikey", "password", "secret", "access_token",
     "bearer", "auth_token", "pipedrive_token", "planhat_token", "credentials"}
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# The guard: what looks like a secret, and the settings that name where one is
# --------------------------------------------------------------------------------------------


_HEX_TEXT = re.compile(r"[0-9A-Fa-f-]+")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_SHOWABLE = re.compile(r"[A-Za-z0-9_.\- ]{1,64}")


def looks_like_secret(value: object) -> bool:
    """True for text that looks like a token or password rather than a name: the Pipedrive
    token format (40 hex digits) or any 24+ hex digits (dashes allowed: UUIDs too), a run of
    20+ letters and digits that switches between letters and digits 3+ times (base64 and random
    keys), or a run of 32+ such characters with mixed case. Names (PIPEDRIVE_API_TOKEN,
    pipedrive-api-token) never do."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _HEX_TEXT.fullmatch(text) and len(text.replace("-", "")) >= 24:
        return True
    for run in _ALNUM_RUN.findall(text):
        switches = sum(a.isdigit() != b.isdigit() for a, b in zip(run, run[1:], strict=False))
        if switches >= 3:
            return True
        if len(run) >= 32 and not run.isupper() and not run.islower():
            return True
    return False


def shown_value(value: Any) -> str:
    """A wrong value as an error shows it: quoted when it is a short plain name, else only
    described (so that a secret written in the wrong place is never repeated)."""
    if isinstance(value, str):
        if _SHOWABLE.fullmatch(value) and not looks_like_secret(value):
            return repr(value)
        return f"a value of {len(value)} characters (not shown)"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    return f"a {'list' if isinstance(value, list) else 'mapping'}"


#: what each name setting holds, for the message when the secret itself is written there
_SECRET_OF = {
    "token_env": ("token", "an environment variable", "PIPEDRIVE_API_TOKEN"),
    "password_env": ("password", "an environment variable", "PDSYNC_WEBHOOK_PASSWORD"),
    "secret_block": ("token", "a Prefect Secret block", "pipedrive-api-token"),
    "password_secret_block": ("password", "a Prefect Secret block", "pdsync-webhook-password"),
}


def _secret_written(field: str, value: str) -> PydanticCustomError:
    what, holder, example = _SECRET_OF.get(field, ("secret", "an environment variable", "X"))
    return PydanticCustomError(
        "secret_in_file",
        "{field} must name {holder}; the value given ({length} characters, not shown) looks "
        "like the {what} itself — a {what} must never be written in a settings file: put the "
        "{what} in {holder} and name that {kind} here (like {example})",
        {
            "field": field,
            "holder": holder,
            "length": len(value),
            "what": what,
            "kind": "variable" if "variable" in holder else "block",
            "example": example,
        },
    )


def env_name(value: str | None, field: str = "token_env") -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and (
        looks_like_secret(value)
        or (not ENV_NAME.match(value) and len(value) >= 16 and not value.isupper())
    ):
        raise _secret_written(field, value)
    if not isinstance(value, str) or not ENV_NAME.match(value):
        raise PydanticCustomError(
            "env_name",
            "found {found}; an environment variable name is letters, digits and _ "
            "(like PIPEDRIVE_API_TOKEN)",
            {"found": shown_value(value)},
        )
    return value


def block_name(value: str | None, field: str = "secret_block") -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and looks_like_secret(value):
        raise _secret_written(field, value)
    if not isinstance(value, str) or not BLOCK_NAME.match(value):
        raise PydanticCustomError(
            "block_name",
            "found {found}; a Prefect Secret block name is lowercase letters, digits and - "
            "(like pipedrive-api-token)",
            {
                "found": shown_value(value)
                if len(str(value)) < 16
                else f"a value of {len(str(value))} characters"
            },
        )
    return value


# --------------------------------------------------------------------------------------------
# No secret in a file, none in a message
# --------------------------------------------------------------------------------------------


def secret_scan(doc: Document) -> list[Problem]:
    """A key that would hold a token or password: refused, without repeating its value."""
    problems = []
    for path, value in walk(doc.data):
        if not path or not isinstance(path[-1], str) or path[-1].casefold() not in SECRET_KEYS:
            continue
        length = len(str(value)) if value is not None else 0
        what = f"a value of {length} characters" if length else "no value"
        problems.append(
            Problem(
                doc.key_at(path),
                f"'{path[-1]}' in {path_text(path[:-1])}: a token or password must never be "
                f"written in a settings file (found {what}). Put it in an environment variable "
                "and name that variable with 'token_env:' (for the receiver: 'password_env:'), "
                "or store it in a Prefect Secret block and name the block with 'secret_block:' "
                "('password_secret_block:')",
            )
        )
    return problems


_SECRET_CANDIDATE = re.compile(r"[A-Za-z0-9_-]{20,}")
#: the keys whose values may rightly be a 40-hex Pipedrive field key (which looks like a token)
_FIELD_KEY_KEYS = frozenset({"pipedrive", "pipedrive_field"})


def field_keys(documents: Iterable[Document]) -> set[str]:
    """The Pipedrive custom-field keys written where field keys belong and nowhere else (so
    that messages may show them): a token written as a field key too is still hidden."""
    keys: set[str] = set()
    elsewhere: list[str] = []
    for doc in documents:
        for path, value in walk(doc.data):
            elsewhere.extend(k for k in path[-1:] if isinstance(k, str))
            if not isinstance(value, str):
                continue
            base = value.partition(".")[0]
            if path and path[-1] in _FIELD_KEY_KEYS and CUSTOM_FIELD_KEY.match(base):
                keys.add(base)
                elsewhere.append(value[len(base) :])
            else:
                elsewhere.append(value)
    return {k for k in keys if not any(k in text for text in elsewhere)}


def hide_secrets(text: str, allowed: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` with whatever looks like a token or password replaced by its length."""

    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        if found in allowed or not looks_like_secret(found):
            return found
        return f"[{len(found)} characters that look like a secret, not shown]"

    return _SECRET_CANDIDATE.sub(hide, text)


def without_secrets(problems: Iterable[Problem], documents: Iterable[Document]) -> list[Problem]:
    """The last guard of every loader error: no message repeats anything that looks like a
    token or password (a token written where a pipeline, a field or a URL belongs), except the
    Pipedrive field keys written as field keys."""
    allowed = field_keys(documents)
    return [Problem(p.location, hide_secrets(p.message, allowed)) for p in problems]
