"""A machine of the lecture's network that is not a mail host, such as Albert's PC
(1.2.3.100), for the programs that run on it and are not labkit's: a sendmail, mutt.

Such a program finds the world through ``$LABKIT_STATE_DIR/world.json`` and connects to
a loopback port; the world cannot tell it from any other local client. A
:class:`Machine` gives its programs their own ``world.json`` (:attr:`Machine.env`), in
which every host's submission service is a *door*: a loopback port that forwards each
connection into the world from the machine's lab address, as the machine's own
connection would arrive. So the servers name the client (``from ... ([1.2.3.100])``),
and while a student's ``sendmail`` is plugged in, the trace marks those connections as
its own (a diagram draws them in orange). ::

    albert_pc = world.machine("1.2.3.100")
    subprocess.run([my_sendmail, "-oi", "betty@brilliant.com"], input=message,
                   env={**os.environ, **albert_pc.env})
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aio import READ_SIZE, heap_sized_reads
from .net import SERVICE_PORTS, Endpoint
from .state import STATE_FILE

if TYPE_CHECKING:
    from .world import AsyncWorld


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file, then half-close the other side (a reset closes it)."""
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


class Machine:
    """The doors of one lab address into a running world (see the module's doc)."""

    def __init__(self, world: "AsyncWorld", address: str) -> None:
        self.world, self.address = world, address
        self.state_dir = Path(world.state_dir) / "machines" / address
        self.doors: dict[str, Endpoint] = {}  # mail host -> the door to its submission service
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def env(self) -> dict[str, str]:
        """What a program run on this machine needs in its environment."""
        return {"LABKIT_STATE_DIR": str(self.state_dir)}

    def info(self) -> dict[str, Any]:
        """This machine's view of the world (its world.json): submission through the doors."""
        info = json.loads(json.dumps(self.world.info()))
        for name, door in self.doors.items():
            info["hosts"][name]["services"]["submission"] = {"host": door.host, "port": door.port}
        info["state_dir"] = str(self.state_dir)
        return info

    async def start(self) -> "Machine":
        for name, host in self.world.hosts.items():
            server = await asyncio.start_server(lambda r, w, host=host: self._forward(host.address, r, w),
                                                "127.0.0.1", 0)
            self._servers.append(server)
            self.doors[name] = Endpoint(*server.sockets[0].getsockname()[:2])
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).write_text(json.dumps(self.info(), indent=1))
        return self

    async def _forward(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seams = self.world.seams
        seam = "sendmail" if seams.is_student("sendmail", seams.get("sendmail")) else ""
        try:
            inward, onward = await self.world.context.addresses.open_connection(
                address, SERVICE_PORTS["submission"], source=self.address, seam=seam)
        except OSError:  # the host is down: so is its door
            writer.close()
            return
        self._connections.update((writer, onward))
        for end in (writer, onward):
            heap_sized_reads(end.transport)
        try:
            await asyncio.gather(_pipe(reader, onward), _pipe(inward, writer))
        finally:
            for end in (writer, onward):
                end.close()
                self._connections.discard(end)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
