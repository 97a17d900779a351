"""What every part of a running lab world shares: trace, address map, seams, DNS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .commit import GroupCommit
from .net import AddressMap, Endpoint
from .seams import Seams
from .trace import Tracer


@dataclass
class LabContext:
    tracer: Tracer = field(default_factory=Tracer)
    addresses: AddressMap = field(default_factory=AddressMap)
    seams: Seams = field(default_factory=Seams)
    # Seams run in worker threads, so a slow student function never stalls a server.
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(32, "labkit-worker"))
    # One writer thread makes every message durable, in batches under load.
    committer: GroupCommit = field(default_factory=GroupCommit)
    names: dict[str, str] = field(default_factory=dict)  # virtual address -> host name
    dns: Endpoint | None = None

    def resolver(self):
        """A dnspython resolver that asks the lab's DNS server (and nothing else)."""
        from .dns.mx import lab_resolver

        if self.dns is None:
            raise RuntimeError("the lab DNS server is not running")
        return lab_resolver(self.dns)

    def name_for(self, address: str) -> str:
        """The host name behind a virtual address, for traces (or the address itself)."""
        return self.names.get(address, address)
