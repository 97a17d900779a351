"""The world's topology file (TOML): DNS zones, mail hosts, users, MTA timings.

The default is the lecture's world, ``labkit/worlds/lecture/world.toml``. A topology is
validated when loaded; a :class:`ConfigError` names the file and the key at fault.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

LECTURE_WORLD = Path(__file__).parent / "worlds" / "lecture" / "world.toml"
BEHAVIOURS = ("normal", "refuse", "greylist", "tarpit", "drop", "down")


class ConfigError(ValueError):
    """The topology file is wrong; the message says where."""


@dataclass(frozen=True)
class MTAConfig:
    retry_schedule: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)  # seconds; the last repeats
    max_queue_time: float = 20.0  # then bounce (Postfix: maximal_queue_lifetime = 5d)
    max_received: int = 30  # Received headers before we call it a loop
    max_message_size: int = 10 * 1024 * 1024
    tarpit_delay: float = 0.5  # per reply, when a host tarpits


@dataclass(frozen=True)
class AuthConfig:
    failure_delay: float = 2.0  # seconds a failed login's reply waits (Dovecot: auth_failure_delay)
    max_failure_delay: float = 15.0  # doubling per failure in a row from one address, up to this


@dataclass(frozen=True)
class HostConfig:
    name: str
    addresses: tuple[str, ...]
    domains: tuple[str, ...]
    users: dict[str, str] = field(default_factory=dict)  # local part -> password
    trusted_networks: tuple[str, ...] = ()
    behaviour: str = "normal"

    @property
    def address(self) -> str:
        return self.addresses[0]


@dataclass(frozen=True)
class WorldConfig:
    path: Path
    zones_dir: Path
    dns_address: str
    mta: MTAConfig
    hosts: tuple[HostConfig, ...]
    auth: AuthConfig = AuthConfig()


def _need(table: dict, key: str, kind: type, where: str):
    if key not in table:
        raise ConfigError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _host(table: dict, where: str) -> HostConfig:
    name = _need(table, "name", str, where)
    where = f"{where} ({name})"
    addresses = tuple(_need(table, "addresses", list, where))
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"{where}: {address!r} is not an IP address") from None
    if not addresses:
        raise ConfigError(f"{where}: 'addresses' is empty")
    domains = tuple(d.lower().rstrip(".") for d in _need(table, "domains", list, where))
    networks = tuple(table.get("trusted_networks", ()))
    for net in networks:
        try:
            ipaddress.ip_network(net)
        except ValueError:
            raise ConfigError(f"{where}: trusted network {net!r} is not a network like 127.0.0.0/8") from None
    behaviour = table.get("behaviour", "normal")
    if behaviour not in BEHAVIOURS:
        raise ConfigError(f"{where}: behaviour {behaviour!r} is not one of {', '.join(BEHAVIOURS)}")
    users = dict(table.get("users", {}))
    for user, password in users.items():
        if "@" in user or "/" in user or user.startswith(".") or not user:
            raise ConfigError(f"{where}: user {user!r} must be a plain local part (no @, /, leading dot)")
        if not isinstance(password, str):
            raise ConfigError(f"{where}: the password of {user!r} must be a string")
    return HostConfig(name.lower(), addresses, domains, users, networks, behaviour)


def _section(data: dict, name: str, kind: type, path: Path) -> dict:
    """The ``[name]`` table, which may only have the keys of the dataclass ``kind``."""
    table = dict(data.get(name, {}))
    known = set(kind.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{path}: unknown [{name}] keys {sorted(unknown)}; known: {sorted(known)}")
    return table


def _auth(table: dict, where: str) -> AuthConfig:
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
            raise ConfigError(f"{where}: {key!r} must be seconds between 0 and 3600, not {value!r}")
    auth = AuthConfig(**{key: float(value) for key, value in table.items()})
    if auth.max_failure_delay < auth.failure_delay:
        raise ConfigError(f"{where}: 'max_failure_delay' ({auth.max_failure_delay:g}) is less than "
                          f"'failure_delay' ({auth.failure_delay:g})")
    return auth


def load_config(path: Path | str | None = None) -> WorldConfig:
    """Read and check a topology file (default: the lecture's world)."""
    path = Path(path) if path else LECTURE_WORLD
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read topology {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    dns = data.get("dns", {})
    zones_dir = (path.parent / dns.get("zones", "zones")).resolve()
    if not zones_dir.is_dir():
        raise ConfigError(f"{path}: [dns] zones directory {zones_dir} does not exist")
    mta_table = _section(data, "mta", MTAConfig, path)
    if "retry_schedule" in mta_table:
        mta_table["retry_schedule"] = tuple(float(x) for x in mta_table["retry_schedule"])
        if not mta_table["retry_schedule"]:
            raise ConfigError(f"{path}: [mta] retry_schedule must not be empty")
    auth = _auth(_section(data, "auth", AuthConfig, path), f"{path}: [auth]")
    hosts = tuple(_host(t, f"{path}: [[host]] #{i + 1}") for i, t in enumerate(data.get("host", [])))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two hosts share a name")
    seen: dict[str, str] = {}
    for host in hosts:
        for address in host.addresses:
            if address in seen:
                raise ConfigError(f"{path}: address {address} belongs to both {seen[address]} and {host.name}")
            seen[address] = host.name
    return WorldConfig(path, zones_dir, dns.get("address", "1.2.3.53"), MTAConfig(**mta_table), hosts, auth)
