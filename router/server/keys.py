"""The proxy's access keys: the key file (hashes only) that ``router keys`` writes and
``router serve --keys-file`` reads, the keys of ``ROUTER_PROXY_KEYS``, and the ring that
matches a presented key in constant time.

A key file is JSON: ``{"version": 1, "keys": [{"name", "hash", "aliases", "tags",
"created"}]}``. ``hash`` is ``sha256:<hex>`` of the key. A plain SHA-256 is enough here, with
no salt and no slow hash: every key ``router keys add`` makes is 256 random bits from
``secrets``, so neither guessing nor a precomputed table can find one from its hash; salts and
slow hashes (bcrypt, argon2) defend low-entropy passwords, and would only cost CPU on every
request. Keys from ``ROUTER_PROXY_KEYS`` may be weaker, but they are never written anywhere.

Light module: ``router keys`` and ``router serve --help`` import no engine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The prefix of every generated key (to spot one in a config or a leak scanner).
KEY_PREFIX = "rk-"
#: Random bytes in a generated key (256 bits).
KEY_BYTES = 32
_HASH_PREFIX = "sha256:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FORMAT_VERSION = 1


class KeyFileError(Exception):
    """A key file that cannot be read or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class AccessKey:
    """One access key: its name, digest, the aliases it may use (None: every one) and the
    tags every call made with it carries (for ``tag:`` budgets)."""

    name: str
    digest: bytes = field(repr=False)
    aliases: frozenset[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    created: str = ""

    def allows(self, model: str) -> bool:
        """Whether this key may call ``model`` (an alias or any other model name)."""
        return self.aliases is None or model in self.aliases

    def describe(self) -> dict[str, Any]:
        """What ``router keys list`` shows: never the hash."""
        return {"name": self.name,
                "aliases": sorted(self.aliases) if self.aliases is not None else None,
                "tags": dict(self.tags), "created": self.created}


def digest(key: str) -> bytes:
    """The SHA-256 digest a key is held as."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_key() -> str:
    """A fresh random key (``rk-`` and 256 random bits, URL-safe)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def check_name(name: str) -> str:
    """``name`` when it is a usable key name; ValueError saying what is allowed otherwise."""
    if not _NAME.match(name):
        raise ValueError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


class KeyRing:
    """Access keys held as SHA-256 digests; a presented key is compared with every one in
    constant time (no early exit: the time says nothing of which, if any, matched)."""

    def __init__(self, keys: Iterable[AccessKey], *, required: bool | None = None) -> None:
        self.keys = tuple(keys)
        #: Whether requests need a key: some are configured, or a key file is (an empty
        #: key file after every key was revoked locks the proxy, it never opens it).
        self.required = bool(self.keys) if required is None else required

    def match(self, presented: Iterable[str]) -> AccessKey | None:
        """The key one of ``presented`` is (the first listed wins), else None."""
        found: AccessKey | None = None
        for key in presented:
            d = digest(key)
            for mine in self.keys:
                if hmac.compare_digest(d, mine.digest) and found is None:
                    found = mine
        return found

    def allows(self, presented: Iterable[str]) -> bool:
        """Whether any presented key is one of the ring's."""
        return self.match(presented) is not None


def env_keys(values: Iterable[str]) -> list[AccessKey]:
    """The keys of ``ROUTER_PROXY_KEYS`` (no alias limit, no tags), named ``env-1``..."""
    return [AccessKey(f"env-{i}", digest(v)) for i, v in enumerate(values, 1)]


# -- the key file -----------------------------------------------------------------------------

def _entry(raw: Any, where: str) -> AccessKey:
    if not isinstance(raw, dict):
        raise KeyFileError(f"{where}: each key must be an object")
    name, hashed = raw.get("name"), raw.get("hash")
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeyFileError(f"{where}.name: a key name (letters, digits, '.', '_', '-')")
    if not isinstance(hashed, str) or not hashed.startswith(_HASH_PREFIX):
        raise KeyFileError(f"{where}.hash: must be 'sha256:' and 64 hex digits")
    try:
        value = bytes.fromhex(hashed[len(_HASH_PREFIX):])
    except ValueError:
        value = b""
    if len(value) != hashlib.sha256().digest_size:
        raise KeyFileError(f"{where}.hash: must be 'sha256:' and 64 hex digits")
    aliases, tags = raw.get("aliases"), raw.get("tags") or {}
    if aliases is not None and (not isinstance(aliases, list)
                                or not all(isinstance(a, str) and a for a in aliases)):
        raise KeyFileError(f"{where}.aliases: a list of model names, or null for every one")
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in tags.items()):
        raise KeyFileError(f"{where}.tags: an object of string values")
    return AccessKey(name, value, frozenset(aliases) if aliases is not None else None,
                     dict(tags), str(raw.get("created") or ""))


def load_key_file(path: Path, *, missing_ok: bool = False) -> list[AccessKey]:
    """The keys of ``path``; KeyFileError naming the file and the entry when it is wrong.
    ``missing_ok``: a file that does not exist holds no keys (``router keys add`` makes it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise KeyFileError(f"{path}: no such key file (router keys add makes it)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{path}: cannot read the key file: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise KeyFileError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyFileError(f"{path}: expected {{\"version\": 1, \"keys\": [...]}}")
    keys = []
    for i, raw in enumerate(doc["keys"]):
        try:
            keys.append(_entry(raw, f"keys[{i}]"))
        except KeyFileError as e:
            raise KeyFileError(f"{path}: {e}") from None
    names = [k.name for k in keys]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise KeyFileError(f"{path}: key names must be unique ({', '.join(dupes)})")
    return keys


def _as_json(k: AccessKey) -> dict[str, Any]:
    return {"name": k.name, "hash": _HASH_PREFIX + k.digest.hex(),
            "aliases": sorted(k.aliases) if k.aliases is not None else None,
            "tags": dict(k.tags), "created": k.created}


def save_key_file(path: Path, keys: Iterable[AccessKey]) -> None:
    """Write ``keys`` to ``path`` at once (a temporary file renamed over it), readable by
    its owner only."""
    text = json.dumps({"version": _FORMAT_VERSION, "keys": [_as_json(k) for k in keys]},
                      indent=2) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise KeyFileError(f"{path}: cannot write the key file: {e.strerror or e}") from None


def make_entry(key: str, name: str, aliases: Iterable[str] | None,
               tags: Mapping[str, str]) -> AccessKey:
    """A key file entry for ``key`` (its hash only), created now."""
    return AccessKey(check_name(name), digest(key),
                     frozenset(aliases) if aliases is not None else None, dict(tags),
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


__all__ = ["KEY_BYTES", "KEY_PREFIX", "AccessKey", "KeyFileError", "KeyRing", "check_name",
           "digest", "env_keys", "load_key_file", "make_entry", "new_key", "save_key_file"]
