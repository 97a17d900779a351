"""Load BIND-format zone files with dnspython.

A zone's origin comes from its ``$ORIGIN`` directive, or else from the file name
(``brilliant.com.zone`` is the zone ``brilliant.com.``). Names are kept absolute
(``relativize=False``) so records can be copied straight into answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import dns.exception
import dns.zone

ZONE_SUFFIX = ".zone"
_ORIGIN_DIRECTIVE = re.compile(r"^\$ORIGIN\s", re.MULTILINE | re.IGNORECASE)


class ZoneError(ValueError):
    """A zone file could not be loaded; the message names the file and the problem."""


def load_zone(path: Path | str) -> dns.zone.Zone:
    """Parse one zone file; it must have an SOA and NS records at its origin."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ZoneError(f"{path}: cannot read zone file: {exc}") from exc
    origin = None if _ORIGIN_DIRECTIVE.search(text) else path.name.removesuffix(ZONE_SUFFIX) + "."
    try:
        return dns.zone.from_text(text, origin, relativize=False, filename=str(path))
    except dns.exception.DNSException as exc:
        raise ZoneError(f"{path}: bad zone file: {exc}") from exc


def load_zones(directory: Path | str) -> list[dns.zone.Zone]:
    """Every ``*.zone`` file in ``directory`` (sorted by name); two files may not
    claim the same origin."""
    directory = Path(directory)
    paths = sorted(directory.glob("*" + ZONE_SUFFIX))
    if not paths:
        raise ZoneError(f"{directory}: no *{ZONE_SUFFIX} files")
    zones: dict[str, tuple[Path, dns.zone.Zone]] = {}
    for path in paths:
        zone = load_zone(path)
        key = zone.origin.to_text().lower()
        if key in zones:
            raise ZoneError(f"{path}: zone {key} is already loaded from {zones[key][0]}")
        zones[key] = (path, zone)
    return [zone for _, zone in zones.values()]
