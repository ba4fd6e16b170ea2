"""A loopback Gemini Live server speaking the real `BidiGenerateContent` wire protocol over TLS.

The official `google-genai` SDK always dials `wss://` and sends its own mix of snake_case and
camelCase keys, so the only honest way to exercise the production adapter is a real TLS
websocket server that answers like Google does (protocols.md B3, E2). Tests drive it through a
small scripting API (`say`, `interrupt`, `tool_call`, `go_away`, `drop`, ...) that always acts
on the newest live connection, and read back what the client sent through plain state
(`connections`, `received_texts`, `audio_bytes_received`) or by awaiting `wait_until(predicate)`.

The simulated world instead passes an `agent`: one task per connection (owned by the
connection's handler, cancelled when it closes) that reads the connection's `inbox` (user
turns, tool results, withdrawn calls) and answers through the per-connection `say_on` /
`send_tool_call_on` / `send_on`, and cuts it with `go_away_on` / `fail_on`; `audio_tap` lets it
look at the caller's audio as it arrives.

Behaviour that needs no script: every client frame is parsed strictly against the published
v1beta schema (`sim.live_schema`; an unknown field closes the socket with 1007 and a reason,
as Google does), only the v1beta path is served, setup is answered with an empty
`setupComplete` and resumption handles are issued after setup and after every finished model
turn (here, with the socket); what the client sends is read, and caller speech detected and
allowed to barge in, by `sim.live_listener`; model turns are paced out, billed in
`usageMetadata` (`sim.live_usage`, one meter per logical session) and, on a barge-in, have
their pending NON_BLOCKING calls withdrawn by `sim.live_speaker`.
"""

from __future__ import annotations

import asyncio
import collections
import http
import itertools
import json
import re
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import trustme
from google.protobuf import json_format
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sim import live_schema, live_speaker
from sim.live_connection import FrameTap, LiveConnection, SayResult, UserTurn, duration_s
from sim.live_listener import Listener
from sim.live_speaker import AUDIO_OUT_MIME as AUDIO_OUT_MIME
from sim.live_usage import UsageMeter

# Only the published schema's version: a client left on the SDK's default path gets 404.
PATH_RE = re.compile(
    rf"/+ws/google\.ai\.generativelanguage\.{live_schema.API_VERSION}"
    r"\.GenerativeService\.BidiGenerateContent"
)
BAD_KEY_REASON = "API key not valid. Please pass a valid API key."


AgentFactory = Callable[["FakeGeminiLive", LiveConnection], Coroutine[Any, Any, None]]


class FakeGeminiLive:
    """One TLS websocket server on 127.0.0.1:0 standing in for `generativelanguage.googleapis.com`.

    Point the SDK at it with `HttpOptions(base_url=fake.base_url,
    async_client_args={"ssl": fake.ssl_client_context()})`. A wrong `x-goog-api-key` is read
    past the setup frame and closed with 1008, as Google does. `close_codes` counts how
    connections ended (the only record kept once an agent's connection is gone).
    """

    def __init__(
        self,
        *,
        api_key: str = "test-gemini-key",
        binary_frames: bool = True,
        vad_threshold_rms: float = 500.0,
        barge_in: bool = True,
        end_of_turn_silence_ms: int = 500,
        issue_handles: bool = True,
        cancel_tools_on_barge_in: bool = True,
        port: int = 0,
        cert_chain_file: str | None = None,
        ca_file: str | None = None,
        agent: AgentFactory | None = None,
    ) -> None:
        self.api_key = api_key
        self.binary_frames = binary_frames
        self.listener = Listener(
            binary_frames=binary_frames,
            vad_threshold_rms=vad_threshold_rms,
            barge_in=barge_in,
            end_of_turn_silence_ms=end_of_turn_silence_ms,
        )
        self.issue_handles = issue_handles  # False: never volunteer a resumption handle
        self.cancel_tools_on_barge_in = cancel_tools_on_barge_in
        self.meters: dict[str, UsageMeter] = {}  # logical session -> its token meter
        self.resumptions = 0  # connections that resumed a session with a handle
        self.connections: list[LiveConnection] = []
        self.handles: dict[str, int] = {}  # issued handle -> logical session number
        # Either the files sim/main.py persisted (so another process can trust them) or a
        # throwaway in-memory CA for tests.
        self._port = port
        self._files = (cert_chain_file, ca_file) if cert_chain_file and ca_file else None
        self._ca = trustme.CA() if self._files is None else None
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost") if self._ca else None
        self._agent = agent
        self.frame_tap: FrameTap | None = None  # sees every frame either way, as on the wire
        self.close_codes: collections.Counter[int | None] = collections.Counter()
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._sessions = itertools.count(1)

    async def __aenter__(self) -> FakeGeminiLive:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if self._files is not None:
            ctx.load_cert_chain(self._files[0])
        else:
            assert self._cert is not None
            self._cert.configure_cert(ctx)
        self._server = await serve(
            self._handle, "127.0.0.1", self._port, ssl=ctx, process_request=self._route
        )

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for future in self.listener.pending_tools.values():
            future.cancel()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_client_context(self) -> ssl.SSLContext:
        """A client context that trusts this fake's CA (and nothing else)."""
        if self._files is not None:
            return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self._files[1])
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        assert self._ca is not None
        self._ca.configure_trust(ctx)
        return ctx

    # ---- observations -------------------------------------------------------------------

    @property
    def audio_bytes_received(self) -> int:
        return sum(c.audio_bytes for c in self.connections)

    @property
    def received_texts(self) -> list[str]:
        return [t for c in self.connections for t in c.texts]

    @property
    def tool_responses(self) -> list[dict[str, Any]]:
        return [r for c in self.connections for r in c.tool_responses]

    @property
    def ready_connections(self) -> list[LiveConnection]:
        return [c for c in self.connections if c.ready]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; it is re-checked after every client frame."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def next_user_turn(self) -> UserTurn:
        return await self.listener.user_turns.get()

    async def current(self) -> LiveConnection:
        """The newest connection that finished setup and is still open (waits for one)."""
        await self.wait_until(lambda: self._current() is not None)
        conn = self._current()
        assert conn is not None
        return conn

    def _current(self) -> LiveConnection | None:
        for conn in reversed(self.connections):
            if conn.is_open:
                return conn
        return None

    # ---- scripting ----------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send any raw server message (camelCase keys) on the current connection."""
        conn = await self.current()
        await conn.send(message, binary=self.binary_frames)

    async def transcribe_input(self, text: str) -> None:
        """A piece of the caller's transcription (the schema has no end-of-utterance flag)."""
        await self.send({"serverContent": {"inputTranscription": {"text": text}}})

    async def say(
        self,
        audio_pcm24k: bytes,
        transcript: str = "",
        *,
        chunk_ms: int = 40,
        pace: float = 1.0,
        input_transcript: str | None = None,
    ) -> SayResult:
        """`say_on` the current connection."""
        conn = await self.current()
        return await self.say_on(
            conn,
            audio_pcm24k,
            transcript,
            chunk_ms=chunk_ms,
            pace=pace,
            input_transcript=input_transcript,
        )

    async def send_on(self, conn: LiveConnection, message: dict[str, Any]) -> None:
        """Send a raw server message on one connection; a closed socket is not an error."""
        try:
            await conn.send(message, binary=self.binary_frames)
        except ConnectionClosed:
            pass

    async def send_tool_call_on(self, conn: LiveConnection, name: str, args: dict[str, Any]) -> str:
        """Send a function call without waiting; the answer reaches `conn.inbox`. Returns its id."""
        call_id = f"fc-{next(self._ids)}"
        message = {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}}
        if not conn.blocks_on(name):
            conn.turn_calls.append(call_id)  # part of the model's turn until it ends
        await self.send_on(conn, message)
        return call_id

    async def say_on(
        self,
        conn: LiveConnection,
        audio_pcm24k: bytes,
        transcript: str = "",
        *,
        chunk_ms: int = 40,
        pace: float = 1.0,
        input_transcript: str | None = None,
    ) -> SayResult:
        """One model turn on `conn` (`sim.live_speaker.speak`), then a fresh resumption
        handle if the client asked for them. A connection that closes mid-turn ends it early
        (`connection_closed`), it does not raise."""
        result = await live_speaker.speak(
            conn,
            audio_pcm24k,
            transcript,
            binary=self.binary_frames,
            chunk_ms=chunk_ms,
            pace=pace,
            input_transcript=input_transcript,
        )
        if result.interrupted or result.connection_closed:
            return result
        if conn.resumption_requested and self.issue_handles:
            try:
                await self._issue_handle(conn)
            except ConnectionClosed:
                return SayResult(result.audio_bytes_sent, conn.interrupted, connection_closed=True)
        return result

    async def interrupt(self) -> None:
        """Barge-in: stop a `say()` in progress and send `interrupted`."""
        conn = await self.current()
        await live_speaker.interrupt(conn, binary=self.binary_frames)

    async def tool_call(
        self, name: str, args: dict[str, Any], *, call_id: str | None = None
    ) -> dict[str, Any]:
        """Send a function call and wait for the tool response with the same id, on any
        connection (a resumed client may answer on its new socket). Returns its `response`."""
        call_id = call_id or f"fc-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.listener.pending_tools[call_id] = future
        try:
            await self.send(
                {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}}
            )
            return await future
        finally:
            self.listener.pending_tools.pop(call_id, None)

    async def cancel_tool_calls(self, ids: list[str]) -> None:
        await self.send({"toolCallCancellation": {"ids": ids}})

    async def resumption_update(self, *, resumable: bool = True) -> str | None:
        """Issue a fresh handle (or announce that resumption is impossible right now)."""
        conn = await self.current()
        if not resumable:
            await conn.send(
                {"sessionResumptionUpdate": {"resumable": False}}, binary=self.binary_frames
            )
            return None
        return await self._issue_handle(conn)

    async def go_away(self, time_left: str = "1s") -> None:
        """Announce the cut, wait up to `time_left` for the client to leave, then close."""
        conn = await self.current()
        await conn.send({"goAway": {"timeLeft": time_left}}, binary=self.binary_frames)
        try:
            async with asyncio.timeout(duration_s(time_left)):
                await conn.closed.wait()
        except TimeoutError:
            assert conn.ws is not None
            await conn.ws.close(1000, "session time limit reached")

    async def go_away_on(self, conn: LiveConnection, time_left_s: float) -> None:
        """A planned cut of one connection, as Google does it: a fresh handle (the server
        sends them as it goes), `goAway{timeLeft}`, then a close once the time is up unless
        the client left first. A closed connection is not an error."""
        try:
            if conn.resumption_requested and self.issue_handles:
                await self._issue_handle(conn)
            away = {"goAway": {"timeLeft": f"{time_left_s:g}s"}}
            await conn.send(away, binary=self.binary_frames)
            async with asyncio.timeout(time_left_s):
                await conn.closed.wait()
        except TimeoutError:
            assert conn.ws is not None
            await conn.ws.close(1000, "session time limit reached")
        except ConnectionClosed:
            pass

    async def fail_on(self, conn: LiveConnection, code: int, reason: str) -> None:
        """Close one connection with an error code and Google's reason for it."""
        assert conn.ws is not None
        await conn.ws.close(code, reason)
        await conn.closed.wait()

    async def drop(self) -> None:
        """Cut the current connection without a close frame (client sees 1006)."""
        conn = await self.current()
        assert conn.ws is not None
        conn.ws.transport.abort()
        await conn.closed.wait()

    async def fail(self, code: int = 1011, reason: str = "Internal error encountered.") -> None:
        """Close the current connection the way Google reports a server-side error."""
        conn = await self.current()
        assert conn.ws is not None
        await conn.ws.close(code, reason)
        await conn.closed.wait()

    # ---- protocol -----------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        # Not urlsplit: it would read the "ws" of a "//ws/..." path as a host name.
        if PATH_RE.fullmatch(request.path.partition("?")[0]) is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        conn = LiveConnection(
            index=len(self.connections),
            path=ws.request.path if ws.request else "",
            api_key=ws.request.headers.get("x-goog-api-key") if ws.request else None,
            ws=ws,
            frame_tap=self.frame_tap,
        )
        self.connections.append(conn)
        agent: asyncio.Task[None] | None = None
        try:
            await self._setup(conn, ws)
            if conn.ready and self._agent is not None:
                conn.inbox = asyncio.Queue()
                agent = asyncio.create_task(self._agent(self, conn), name="sim-agent")
            if conn.ready:
                async for raw in ws:
                    self._tap(raw)
                    try:
                        message = live_schema.parse_client_frame(raw)
                    except live_schema.SchemaError as exc:
                        conn.log.append(("client", "invalid", str(raw)[:200]))
                        await ws.close(live_schema.INVALID_ARGUMENT, _reason(exc))
                        break
                    await self.listener.on_message(conn, message)
                    await self._notify()
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_code
            self.close_codes[ws.close_code] += 1
            conn.closed.set()
            if agent is not None:
                agent.cancel()
                await asyncio.gather(agent, return_exceptions=True)
                # A long-running sim keeps no history of finished connections.
                self.connections.remove(conn)
            await self._notify()

    async def _setup(self, conn: LiveConnection, ws: ServerConnection) -> None:
        raw = await ws.recv()
        self._tap(raw)
        try:
            message = live_schema.parse_client_frame(raw)
        except live_schema.SchemaError as exc:
            conn.log.append(("client", "invalid", str(raw)[:200]))
            await ws.close(live_schema.INVALID_ARGUMENT, _reason(exc))
            return
        setup = dict(json_format.MessageToDict(type(message).pb(message))).get("setup")
        conn.log.append(("client", "setup" if setup is not None else "invalid", setup))
        if conn.api_key != self.api_key:
            await ws.close(1008, BAD_KEY_REASON)
            return
        if not isinstance(setup, dict) or not setup.get("model"):
            await ws.close(1007, "Invalid JSON payload: the first message must be setup.")
            return
        conn.setup = setup
        resumption = setup.get("sessionResumption")
        if isinstance(resumption, dict) and resumption.get("handle"):
            handle = str(resumption["handle"])
            if handle not in self.handles:
                await ws.close(1007, "Invalid session resumption handle.")
                return
            conn.resume_handle = handle
            conn.session_id = f"sess-{self.handles[handle]}"
            self.resumptions += 1
        else:
            conn.session_id = f"sess-{next(self._sessions)}"
            self.meters[conn.session_id] = UsageMeter()
            self.meters[conn.session_id].heard_text(json.dumps(setup))  # instruction and tools
        conn.usage = self.meters.setdefault(conn.session_id, UsageMeter())
        conn.cancel_tools_on_barge_in = self.cancel_tools_on_barge_in
        await conn.send({"setupComplete": {}}, binary=self.binary_frames)
        conn.ready = True
        await self._notify()
        if conn.resumption_requested and self.issue_handles:
            await self._issue_handle(conn)

    def _tap(self, raw: str | bytes) -> None:
        if self.frame_tap is not None:
            self.frame_tap("client", raw.encode() if isinstance(raw, str) else raw)

    async def _issue_handle(self, conn: LiveConnection) -> str:
        session = int(conn.session_id.rsplit("-", 1)[1])
        handle = f"h-{session}-{next(self._ids)}"
        self.handles[handle] = session
        conn.issued_handles.append(handle)
        update = {"newHandle": handle, "resumable": True}
        await conn.send({"sessionResumptionUpdate": update}, binary=self.binary_frames)
        return handle

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _reason(exc: live_schema.SchemaError) -> str:
    """A websocket close reason: one line, at most 123 bytes of UTF-8."""
    line = str(exc).splitlines()[0] if str(exc) else "Invalid JSON payload received."
    return line.encode()[:123].decode(errors="ignore")
