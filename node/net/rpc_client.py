"""A small blocking client of a node's HTTP API, for the command line.

Every failure (no node listening, a timeout, an HTTP error, a reply that is not
the API's JSON) is an RpcError whose message is one line naming the URL and, for
an HTTP error, the server's own error text.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from node.types.errors import CommandError

DEFAULT_RPC = "http://127.0.0.1:26600"
MAX_REPLY = 16 * 1024 * 1024
_MAX_ERROR_TEXT = 300


class RpcError(CommandError):
    """A request to a node that failed; the message is one line."""


def check_url(text: str) -> str:
    """The base URL of a node's API, without a trailing slash; ValueError if unusable."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    try:
        parsed.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    return text.rstrip("/")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_ERROR_TEXT else line[:_MAX_ERROR_TEXT] + "..."


class RpcClient:
    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = check_url(base_url)
        self.timeout = timeout
        # no proxies: a node is usually on this machine, and an http_proxy in the
        # environment would otherwise swallow requests to 127.0.0.1
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> Any:
        return self._request(urllib.request.Request(self.base_url + path))

    def post_text(self, path: str, text: str) -> Any:
        return self._request(urllib.request.Request(
            self.base_url + path, data=text.encode(), method="POST",
            headers={"Content-Type": "text/plain"}))

    def _request(self, request: urllib.request.Request) -> Any:
        url = request.full_url
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                body = reply.read(MAX_REPLY + 1)
        except urllib.error.HTTPError as exc:
            raise RpcError(f"{url}: HTTP {exc.code}: {_error_text(exc)}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason.strerror if isinstance(exc.reason, OSError) else exc.reason
            raise RpcError(f"cannot reach {url}: {_one_line(str(reason or exc.reason))}") from None
        except (socket.timeout, TimeoutError):
            raise RpcError(f"{url}: no reply within {self.timeout:g} s") from None
        except (OSError, ValueError) as exc:  # a connection reset, a malformed reply
            raise RpcError(f"{url}: {_one_line(str(exc)) or type(exc).__name__}") from None
        if len(body) > MAX_REPLY:
            raise RpcError(f"{url}: the reply exceeds {MAX_REPLY} bytes")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RpcError(f"{url}: the reply is not JSON; is this a uponode node?") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The API's {"error": ...} text, or the start of whatever else the server said."""
    try:
        raw = exc.read(64 * 1024)
    except OSError:
        return exc.reason or "no reason given"
    try:
        message = json.loads(raw)["error"]
        if isinstance(message, str):
            return _one_line(message)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        pass
    return _one_line(raw.decode("utf-8", "replace")) or str(exc.reason)
