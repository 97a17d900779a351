"""The lecture page's web server (aiohttp, on the world's own event loop).

    GET  /                    the page (static/index.html, lecture.js, lecture.css)
    GET  /api/state           where a page starts: the latest rows, mailboxes, queue, controls
    GET  /api/events?after=N  server-sent events from message N on: rows, views, reset
    GET  /api/message?address=A&name=F   one stored message's raw source
    POST /api/send            {"story": "dinner"} or {"from", "to", "subject", "body"}
    POST /api/behave          {"host", "behaviour"}          (labkit.control.perform)
    POST /api/dns-fault       {"name", "fault"}

It listens on loopback unless told otherwise. Requests must name that address as their
Host (so a web site cannot reach the page through DNS rebinding); a POST must be JSON
from the page's own origin (so another site's form or script cannot press its buttons).
On any other address the page needs a token: it is in the URL `labkit world` prints,
and the page keeps it in a cookie.
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import secrets
import socket
from email.message import EmailMessage
from email.policy import SMTP
from importlib import resources
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from ..checks.harness import DINNER
from ..control import ControlError, perform, state
from ..demo import ALBERT, ALBERT_PC, BETTY, send_from_alberts_pc
from ..net import is_loopback
from ..smtp.reply import SendResult, SMTPError
from . import views
from .feed import Feed, sse

if TYPE_CHECKING:
    from ..world import AsyncWorld

LANE_NAMES = {ALBERT_PC: f"Albert's PC {ALBERT_PC}"}
COOKIE = "labkit_token"
VIEWS_DELAY = 0.25  # seconds between two refreshes of the mailboxes and the queue, at least
KEEPALIVE = 15.0  # seconds of silence before a stream says it is still there
HEADERS = {  # the page runs its own script and style only, and in no one else's frame
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LecturePage:
    """``feed``: options for the live feed (:class:`~labkit.lecture.feed.Feed`: delay, max_rows)."""

    def __init__(self, world: "AsyncWorld", *, token: str | None = None, feed: dict[str, Any] | None = None) -> None:
        self.world = world
        self.token = token
        self.feed_options = feed or {}
        self.url = ""
        self.feed: Feed | None = None
        self.views: dict[str, Any] = {}
        self._runner: web.AppRunner | None = None
        self._hosts: set[str] = set()
        self._refresh: asyncio.Task | None = None
        self._refresh_again = False
        self._static = resources.files(__package__) / "static"

    # -- life cycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host) and not self.token:
            self.token = secrets.token_urlsafe(18)  # anyone on the network could press the buttons otherwise
        loop = asyncio.get_running_loop()
        self.feed = Feed(self.world.tracer, loop, names=LANE_NAMES, on_views=self._views_changed,
                         **self.feed_options)
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._asset)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/message", self._message)
        app.router.add_post("/api/send", self._send)
        app.router.add_post("/api/behave", self._control("behave"))
        app.router.add_post("/api/dns-fault", self._control("dns-fault"))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, host, port)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        bound = self._runner.addresses[0][1]
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        netloc = f"[{shown}]:{bound}" if ":" in shown else f"{shown}:{bound}"
        self._hosts = {netloc, f"localhost:{bound}", f"127.0.0.1:{bound}", f"[::1]:{bound}"}
        self.url = f"http://{netloc}/" + (f"?token={self.token}" if self.token else "")
        self.views = await self._read_views()

    async def stop(self) -> None:
        if self.feed is not None:
            self.feed.close()  # every stream ends at once
        if self._refresh is not None:
            self._refresh.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- who may ask --------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token:
            given = (request.query.get("token") or request.headers.get("X-Labkit-Token")
                     or request.cookies.get(COOKIE) or "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _refusal(403, "this page needs its token: open the URL `labkit world --web` printed")
        elif request.host not in self._hosts:
            return _refusal(403, f"this page answers to {sorted(self._hosts)[0]} only, not {request.host!r}")
        if request.method == "POST":
            if request.content_type != "application/json":
                return _refusal(415, "send JSON (Content-Type: application/json)")
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return _refusal(403, f"requests from {origin} are not taken")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(HEADERS)
            if self.token and request.query.get("token"):
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    # -- the page -----------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=(self._static / "index.html").read_bytes(), content_type="text/html")

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        types = {".js": "text/javascript", ".css": "text/css"}
        name = request.match_info["name"]
        kind = types.get(name[name.rfind("."):]) if "." in name else None
        asset = self._static / name
        if kind is None or "/" in name or name.startswith(".") or not asset.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=asset.read_bytes(), content_type=kind, charset="utf-8")

    async def _state(self, request: web.Request) -> web.StreamResponse:
        assert self.feed is not None
        users = [{"address": a.address, "host": h.name} for h in self.world.hosts.values() for a in h.accounts]
        return web.json_response({"feed": self.feed.snapshot(), "views": self.views, "users": users,
                                  "story": {"from": ALBERT, "to": BETTY}})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events after ``after`` (the snapshot's number), as they come."""
        assert self.feed is not None
        feed = self.feed
        try:  # a reconnecting EventSource says where it was (Last-Event-ID)
            number = int(request.headers.get("Last-Event-ID") or request.query.get("after", feed.number))
        except ValueError:
            raise web.HTTPBadRequest(text="after: a message number") from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **HEADERS})
        await response.prepare(request)
        try:
            while not feed.closed:
                messages = feed.since(number)
                if messages is None:  # too far behind: start again from a snapshot
                    await response.write(sse("reset", {}))
                    number = feed.number
                elif messages:
                    await response.write(b"".join(message for _, message in messages))
                    number = messages[-1][0]
                else:
                    await feed.wait(number, KEEPALIVE)
                    if feed.number == number and not feed.closed:
                        await response.write(b": still here\n\n")
        except (ConnectionError, asyncio.CancelledError):
            pass  # the page went away, or the world stops
        return response

    async def _message(self, request: web.Request) -> web.StreamResponse:
        address, name = request.query.get("address", ""), request.query.get("name", "")
        try:
            raw = await asyncio.to_thread(views.raw_message, self.world, address, name)
        except KeyError as error:
            raise web.HTTPNotFound(text=str(error.args[0])) from None
        return web.Response(text=raw.decode("utf-8", "replace"), content_type="text/plain")

    # -- the controls -------------------------------------------------------------------------
    async def _send(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        try:
            if body.get("story") == "dinner":
                result = await asyncio.to_thread(send_from_alberts_pc, self.world, [BETTY], DINNER)
            else:
                sender, recipients, message = self._compose(body)
                result = await asyncio.to_thread(self.world.submit, sender, recipients, message)
        except ControlError as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        except (SMTPError, OSError) as error:
            return web.json_response({"ok": False, "error": f"the submission failed: {error}"}, status=502)
        return web.json_response({"ok": True, "said": _said(result)})

    def _compose(self, body: dict[str, Any]) -> tuple[str, list[str], bytes]:
        sender = str(body.get("from", ""))
        try:
            self.world.mailbox(sender)
        except KeyError:
            raise ControlError(f"{sender!r} is not a user of this world: choose one of its mailboxes") from None
        recipients = [a for _, a in email.utils.getaddresses([str(body.get("to", ""))]) if a]
        bad = [a for a in recipients if a.count("@") != 1 or any(c in a for c in " \t\r\n<>")]
        if not recipients or bad:
            raise ControlError(f"recipients: {', '.join(bad) or '(none)'} — give addresses like betty@brilliant.com")
        message = EmailMessage(policy=SMTP)
        message["From"], message["To"] = sender, ", ".join(recipients)
        message["Subject"] = str(body.get("subject", "")).strip() or "(no subject)"
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2])
        message.set_content(str(body.get("body", "")))
        return sender, recipients, message.as_bytes()

    def _control(self, op: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await _json(request)
            try:
                return web.json_response(perform(self.world, {**body, "op": op}))
            except ControlError as error:
                return web.json_response({"ok": False, "error": str(error)}, status=400)

        return handle

    # -- the mailboxes, the queue and the controls' state, kept fresh ----------------------------
    async def _read_views(self) -> dict[str, Any]:
        mailboxes = await asyncio.to_thread(views.mailboxes, self.world)
        return {"mailboxes": mailboxes, "queue": views.queue(self.world), "controls": state(self.world)}

    def _views_changed(self) -> None:
        """A note says the mailboxes, the queue or the controls changed: read them again,
        at most every VIEWS_DELAY seconds, and tell every page."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh_again = True
            return
        self._refresh = asyncio.ensure_future(self._refresh_views())

    async def _refresh_views(self) -> None:
        while True:
            self._refresh_again = False
            await asyncio.sleep(VIEWS_DELAY)
            self.views = await self._read_views()
            if self.feed is None or self.feed.closed:
                return
            self.feed.publish("views", self.views)
            if not self._refresh_again:
                return


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the request body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the request body is a JSON object")
    return body


def _refusal(status: int, why: str) -> web.Response:
    return web.json_response({"ok": False, "error": why}, status=status, headers=HEADERS)


def _said(result: SendResult) -> str:
    accepted = ", ".join(result.accepted) or "nobody"
    refused = "; ".join(f"{r}: {reply.code} {reply.text}" for r, reply in result.refused.items())
    data = f" — {result.data_reply.code} {result.data_reply.text}" if result.data_reply else ""
    return f"accepted for {accepted}{data}" + (f"; refused {refused}" if refused else "")
