"""What every part of a running lab world shares: trace, address map, seams, DNS."""

from __future__ import annotations

from dataclasses import dataclass, field

from .boundary import DEFAULT_DEADLINE, Boundary
from .commit import GroupCommit
from .mta.receipts import Receipts
from .net import AddressMap, Endpoint
from .seams import Seams
from .trace import Tracer


DELIVERY_GATHER = 0.1  # seconds; see GroupCommit's gather (Postfix delivers about as late)


@dataclass
class LabContext:
    tracer: Tracer = field(default_factory=Tracer)
    addresses: AddressMap = field(default_factory=AddressMap)
    seams: Seams = field(default_factory=Seams)
    deadline: float = DEFAULT_DEADLINE  # seconds a student's part may take per call
    # Two writer threads make every message durable before its 250, in batches under
    # load (one batch may start while the other flushes); another writes what comes after
    # the 250 (Maildir copies, delivery progress), so a 250 never waits behind the flushes
    # of the messages before it, and makes the spare files all use when idle, so a 250
    # never waits for one being made either. In a flood of mail it gathers a batch for up
    # to DELIVERY_GATHER (Maildir copies made durable up to 0.1 s later, with fewer flushes);
    # a message after a quiet moment is delivered at once.
    committer: GroupCommit = field(default_factory=lambda: GroupCommit(make_spares=False, writers=2))
    deliverer: GroupCommit = field(default_factory=lambda: GroupCommit("labkit-deliver", gather=DELIVERY_GATHER))
    # What the world's SMTP servers accepted, to check a student's client's claims.
    receipts: Receipts = field(default_factory=Receipts)
    names: dict[str, str] = field(default_factory=dict)  # virtual address -> host name
    dns: Endpoint | None = None

    def __post_init__(self) -> None:
        # Every call into a seam, and labkit's own blocking work, goes through here.
        self.boundary = Boundary(self.tracer, deadline=self.deadline)

    def resolver(self, source: str = ""):
        """A dnspython resolver that asks the lab's DNS server (and nothing else); with
        ``source``, a host's virtual address, the server's trace names that host."""
        from .dns.resolver import lab_resolver

        if self.dns is None:
            raise RuntimeError("the lab DNS server is not running")
        return lab_resolver(self.dns, addresses=self.addresses, source=source)

    def peer_name(self, peername: tuple | None) -> str:
        """How traces name a connected peer: its host's name, its virtual address, or
        its real address (a real client such as dig or swaks)."""
        return self.name_for(self.addresses.peer_address(peername))

    def name_for(self, address: str) -> str:
        """The host name behind a virtual address, for traces (or the address itself)."""
        return self.names.get(address, address)
