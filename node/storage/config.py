"""A node's config.toml: where it listens, whom it dials, whether and how much it mines.

Every key is optional and falls back to its default; an unknown key or a bad value
is a ConfigError naming the key, so a typo is never a silently ignored setting.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
from typing import Any, Callable

from node.types.errors import CommandError
from node.types.transactions import MAX_MINER_UNITS

DEFAULT_LISTEN = "127.0.0.1:26600"
MAX_PEERS = 1000
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(CommandError):
    """A config that cannot be used; the message is one line naming the key."""


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    listen: str = DEFAULT_LISTEN
    peers: tuple[str, ...] = ()
    mine: bool = True
    units: int = 1  # work units to take each round when mining
    peer_exchange: bool = True


def parse_host_port(text: str) -> tuple[str, int]:
    """Split "host:port" (an IPv6 host in brackets); ValueError says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be 1..65535, got {port_text!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r}") from None
        return host[1:-1], int(port_text)
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"bad host {host!r}")
    return host, int(port_text)


def _address(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a \"HOST:PORT\" string")
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return value


def _peers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError("peers: expected a list of \"HOST:PORT\" strings")
    if len(value) > MAX_PEERS:
        raise ConfigError(f"peers: {len(value)} entries, at most {MAX_PEERS}")
    return tuple(_address(f"peers[{i}]", peer) for i, peer in enumerate(value))


def _flag(name: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false")
        return value
    return parse


def _units(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MINER_UNITS:
        raise ConfigError(f"units: expected an integer 1..{MAX_MINER_UNITS}")
    return value


_KEYS = {"listen": lambda value: _address("listen", value), "peers": _peers, "mine": _flag("mine"),
         "units": _units, "peer_exchange": _flag("peer_exchange")}


def parse_config(data: bytes | str) -> NodeConfig:
    """Validate config.toml text; raises ConfigError and nothing else."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        raw = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text") from None
    except ValueError as exc:  # bad TOML, or an integer of over 4300 digits
        raise ConfigError(f"not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib recurses once per nested array or inline table
        raise ConfigError("not valid TOML: nested too deeply") from None
    for key in raw:
        if key not in _KEYS:
            # a quoted TOML key can hold any character; JSON quoting keeps it on one line
            name = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
            raise ConfigError(f"{name}: unknown key")
    return NodeConfig(**{key: _KEYS[key](value) for key, value in raw.items()})


def render_config(config: NodeConfig) -> str:
    """The TOML text of config; parse_config(render_config(c)) == c."""
    # the values are validated host:port strings, so JSON quoting is valid TOML
    peers = ", ".join(json.dumps(peer) for peer in config.peers)
    return (
        "# uponode node configuration\n"
        "\n"
        "# address of this node's HTTP and peer server (HOST:PORT)\n"
        f"listen = {json.dumps(config.listen)}\n"
        "\n"
        "# peers to connect to at start (HOST:PORT each)\n"
        f"peers = [{peers}]\n"
        "\n"
        "# train assigned work units and earn rewards\n"
        f"mine = {'true' if config.mine else 'false'}\n"
        "\n"
        "# work units to take each round: each trains the genesis's steps and is paid alike,\n"
        "# and each needs the miner bond (a registration may add units, never drop them)\n"
        f"units = {config.units}\n"
        "\n"
        "# learn more peers from the peers' /status and dial them (false: only the peers\n"
        "# above, as for a validator reached only through sentry nodes)\n"
        f"peer_exchange = {'true' if config.peer_exchange else 'false'}\n"
    )
