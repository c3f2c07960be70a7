"""Who may use the server: the API key (Bearer token) and the rule that a keyless server stays on loopback."""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from diffcli.errors import UsageError
from diffcli.plan.text import escape_control

KEY_ENV = "DIFFCLI_API_KEY"
MAX_KEY_FILE_BYTES = 4096
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def load_key(key_file: Path | None) -> str | None:
    """The API key: from --api-key-file (first line, stripped) or else DIFFCLI_API_KEY; None when neither is set."""
    if key_file is not None:
        shown = escape_control(str(key_file))
        try:
            with open(key_file, "rb") as handle:
                data = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as err:
            raise UsageError(f"--api-key-file: {shown}: cannot read ({type(err).__name__})") from None
        if len(data) > MAX_KEY_FILE_BYTES:
            raise UsageError(f"--api-key-file: {shown}: larger than {MAX_KEY_FILE_BYTES} bytes")
        lines = data.decode("utf-8", "replace").strip().splitlines()
        return _checked(lines[0].strip() if lines else "", f"--api-key-file {shown}")
    value = os.environ.get(KEY_ENV)
    return None if value is None else _checked(value.strip(), KEY_ENV)


def _checked(key: str, where: str) -> str:
    if not key:
        raise UsageError(f"{where}: the API key is empty")
    if not key.isprintable() or not key.isascii() or " " in key:
        raise UsageError(f"{where}: the API key must be printable ASCII without spaces")
    return key


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; everything else (0.0.0.0, ::, a name) may be reached from outside."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str | None, insecure: bool) -> None:
    """A server without a key binds to loopback only, unless --insecure-no-key says otherwise (exit 2)."""
    if key is None and not is_loopback(host) and not insecure:
        raise UsageError(f"refusing to serve on {escape_control(host)} without an API key: set {KEY_ENV} or "
                         "--api-key-file (or pass --insecure-no-key)")


def authorized(header: bytes | None, key: str | None) -> bool:
    """`Authorization: Bearer KEY` (constant-time compare); everything passes when the server has no key."""
    if key is None:
        return True
    if not header or not header[:7].lower() == b"bearer ":
        return False
    return hmac.compare_digest(header[7:].strip(), key.encode())
