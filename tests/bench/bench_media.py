"""The whole media process under real-time load: ~100 concurrent calls on loopback.

The media process (`create_app` under uvicorn, exactly as `media.server` runs it, with core
behind an in-memory `CoreLink` and no Deepgram) runs as a subprocess; this process plays
Twilio (one Media Streams client per call: a 160-byte μ-law frame every 20 ms, marks echoed)
and Gemini Live (a lean TLS server speaking the Live wire protocol to the real google-genai
SDK: 40 ms chunks of 24 kHz audio at real time, a turn every ~2.5 s). Every fifth call's model
is interrupted every 3 s, alternating loud and soft turns so a stale frame is recognisable by
its level. All timestamps are `time.monotonic()` (system-wide, so comparable across processes).

The load generator keeps its own cost down (uvloop, one timer per fifth of the streams instead
of one per stream) because it shares the box's two cores with the media process; its CPU share
and the load average are printed so a saturated run can be recognised. BENCH_MEDIA_DEEPGRAM=1
adds the supervisor's ear (a Deepgram fake in this process, a live STT socket per call).

Printed figures (issue 6, item 8): p50/p99 added latency per frame in both directions, frames
dropped, CPU ms per call-second and RSS per call of the media process, interrupted -> clear
p99 and stale frames after clear, and the first greeting frame after the model's first chunk.
Run alone: `python -m tests.bench.bench_media` (BENCH_MEDIA_CALLS, BENCH_MEDIA_SECONDS).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import dataclasses
import json
import os
import re
import ssl
import sys
import tempfile
import time
import warnings
from typing import Any

import httpx
import numpy as np
import psutil
import trustme
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from media.codec import twilio_codec
from telephony import stream_tokens
from tests.fakes.twilio_stream import mint_token

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

CALLS = int(os.environ.get("BENCH_MEDIA_CALLS", "100"))
SECONDS = float(os.environ.get("BENCH_MEDIA_SECONDS", "20"))
WITH_DEEPGRAM = os.environ.get("BENCH_MEDIA_DEEPGRAM", "") == "1"  # the supervisor's ear too
TOKEN = "bench-twilio-token"
GEMINI_KEY = "bench-gemini-key"
CHUNK_S = 0.04
TURN_CHUNKS = 50  # 2 s of speech per turn on the steady calls, then 0.5 s of quiet
INTERRUPT_CHUNKS = 75  # the interrupted calls are cut every 3 s
PAUSE_CHUNKS = 12  # ~0.5 s of model silence between turns
TICKERS = 5  # carrier and model clocks, each driving a fifth of the streams, 4 ms apart
SILENCE = b"\xff" * 160
LOUD, SOFT = 12_000, 1_500
IN_FRAME_BYTES = 640  # 20 ms at 16 kHz PCM16, what the bridge sends Gemini per Twilio frame


def _chunk_message(amplitude: int) -> bytes:
    t = np.arange(24_000 * CHUNK_S) / 24_000
    pcm = (amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    data = base64.b64encode(pcm).decode()
    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
    return json.dumps({"serverContent": {"modelTurn": {"parts": [part]}}}).encode()


@dataclasses.dataclass
class ModelSide:
    """What the fake model saw and did on one call."""

    interrupting: bool
    recv: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # (t, total bytes)
    sent: list[float] = dataclasses.field(default_factory=list)  # chunk send times
    interrupts: list[float] = dataclasses.field(default_factory=list)
    bytes_in: int = 0
    speaking: bool = True


class LeanGemini:
    """The Live wire protocol, minimal and cheap: setup, audio counted, scripted speech."""

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1")
        self.calls: dict[str, ModelSide] = {}
        self._server: Server | None = None
        self._chunks = {LOUD: _chunk_message(LOUD), SOFT: _chunk_message(SOFT)}
        self.speakers: list[set[Speaker]] = [set() for _ in range(TICKERS)]

    async def start(self) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        self._server = await serve(self._handle, "127.0.0.1", 0, ssl=ctx, compression=None)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def all_speaking(self, calls: int) -> bool:
        return len(self.calls) >= calls and all(side.sent for side in self.calls.values())

    def write_ca(self, path: str) -> None:
        self._ca.cert_pem.write_to_path(path)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        setup = json.loads(await ws.recv())["setup"]
        text = "".join(p.get("text", "") for p in setup["systemInstruction"]["parts"])
        match = re.search(r"Task of (\S+)", text)
        call_id = match.group(1) if match else "?"
        side = ModelSide(interrupting=call_id.endswith("i"))
        self.calls[call_id] = side
        await ws.send(b'{"setupComplete":{}}')
        speaker: Speaker | None = None
        try:
            async for raw in ws:
                now = time.monotonic()
                msg = raw if isinstance(raw, str) else raw.decode()
                if msg.startswith('{"realtime_input"'):
                    start = msg.index('"data": "') + 9
                    end = msg.index('"', start)
                    side.bytes_in += (end - start) * 3 // 4 - msg.count("=", start, end)
                    side.recv.append((now, side.bytes_in))
                elif "client_content" in msg and speaker is None:
                    speaker = Speaker(ws, side, self._chunks)
                    group = self.speakers[len(self.calls) % TICKERS]
                    group.add(speaker)
        except ConnectionClosed:
            pass
        finally:
            for group in self.speakers:
                group.discard(speaker)  # type: ignore[arg-type]


class Speaker:
    """One call's model voice, stepped every 40 ms by a shared ticker."""

    def __init__(self, ws: ServerConnection, side: ModelSide, chunks: dict[int, bytes]) -> None:
        self._ws = ws
        self._side = side
        self._chunks = chunks
        self._amplitude = LOUD
        self._in_turn = 0
        self._pause = 0

    async def step(self) -> None:
        side = self._side
        if self._pause:
            self._pause -= 1
            return
        if side.interrupting and self._in_turn == INTERRUPT_CHUNKS:
            side.interrupts.append(time.monotonic())
            await self._ws.send(b'{"serverContent":{"interrupted":true}}')
            await self._ws.send(b'{"serverContent":{"turnComplete":true}}')
            self._amplitude = SOFT if self._amplitude == LOUD else LOUD
            self._in_turn = 0
        elif not side.interrupting and self._in_turn == TURN_CHUNKS:
            await self._ws.send(b'{"serverContent":{"turnComplete":true}}')
            self._in_turn, self._pause = 0, PAUSE_CHUNKS
            return
        side.sent.append(time.monotonic())
        await self._ws.send(self._chunks[self._amplitude])
        self._in_turn += 1


async def _tick(period: float, phase: float, members: Any, stop: asyncio.Event) -> None:
    """Step every member once per `period`: one timer for many streams, like a carrier's."""
    base = time.monotonic() + phase
    n = 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(max(0.0, base + n * period - time.monotonic()))
        for member in list(members):
            with contextlib.suppress(ConnectionClosed):
                await member.step()


@dataclasses.dataclass
class PhoneSide:
    """What the fake carrier sent and received on one call."""

    sent: list[float] = dataclasses.field(default_factory=list)
    media: list[float] = dataclasses.field(default_factory=list)
    levels: list[tuple[float, str]] = dataclasses.field(default_factory=list)  # interrupted calls
    clears: list[float] = dataclasses.field(default_factory=list)


class Phone:
    """One call's carrier side; `step()` sends the next 20 ms frame."""

    def __init__(self, ws: ClientConnection, sid: str, side: PhoneSide) -> None:
        self._ws = ws
        self._sid = sid
        self._side = side
        self._n = 0

    async def step(self) -> None:
        n = self._n
        self._side.sent.append(time.monotonic())
        await self._ws.send(twilio_codec.inbound_media(self._sid, n + 2, n + 1, n * 20, SILENCE))
        self._n += 1


async def _phone(
    url: str, call_id: str, side: PhoneSide, phones: set[Phone], stop: asyncio.Event
) -> None:
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    sid = "MZ" + call_id.rjust(32, "0")[-32:]
    async with connect(
        url, additional_headers={"X-Twilio-Signature": signature}, compression=None
    ) as ws:
        await ws.send(twilio_codec.connected())
        call_sid = "CA" + sid[2:]
        # The custom parameters core puts in the TwiML: media refuses a stream without its token.
        params = {"call_id": call_id, stream_tokens.PARAMETER: mint_token(TOKEN, call_id)}
        await ws.send(twilio_codec.start(sid, call_sid, "AC" + "0" * 32, params))
        phone = Phone(ws, sid, side)
        phones.add(phone)
        reader = asyncio.create_task(_phone_reader(ws, sid, side, call_id.endswith("i")))
        try:
            await stop.wait()
        finally:
            phones.discard(phone)
            reader.cancel()


async def _phone_reader(ws: ClientConnection, sid: str, side: PhoneSide, check: bool) -> None:
    seq = 10**6
    async for raw in ws:
        now = time.monotonic()
        msg = raw if isinstance(raw, str) else raw.decode()
        if msg.startswith('{"event":"media"'):
            # A message may carry several whole frames (OUTBOUND_FRAMES_PER_MESSAGE).
            start = msg.index('"payload":"') + 11
            chars = msg.index('"', start) - start
            frames = max(1, chars * 3 // 4 // 160)
            side.media.extend([now] * frames)
            if check:
                payload = twilio_codec.parse_outbound(msg).payload  # type: ignore[union-attr]
                for i in range(0, len(payload), 160):
                    rms = audioop.rms(audioop.ulaw2lin(payload[i : i + 160], 2), 2)
                    side.levels.append((now, "loud" if rms > 4000 else "soft"))
        elif '"event":"clear"' in msg:
            side.clears.append(now)
        elif '"event":"mark"' in msg:
            name = json.loads(msg)["mark"]["name"]
            seq += 1
            await ws.send(twilio_codec.mark_echo(sid, seq, name))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _inbound_latencies(phone: PhoneSide, model: ModelSide, t0: float, t1: float) -> list[float]:
    frames_in = model.bytes_in // IN_FRAME_BYTES
    lost = len(phone.sent) - frames_in  # all at call start, while Gemini was connecting
    totals = [b for _, b in model.recv]
    out = []
    for j in range(frames_in):
        k = j + lost
        if k < 0 or not t0 <= phone.sent[k] <= t1:
            continue
        i = bisect.bisect_left(totals, (j + 1) * IN_FRAME_BYTES)
        out.append(model.recv[i][0] - phone.sent[k])
    return out


def _outbound_latencies(phone: PhoneSide, model: ModelSide, t0: float, t1: float) -> list[float]:
    return [
        t - model.sent[m // 2]
        for m, t in enumerate(phone.media)
        if m // 2 < len(model.sent) and t0 <= t <= t1
    ]


def _clear_figures(phone: PhoneSide, model: ModelSide) -> tuple[list[float], int]:
    """Latency from each interrupt to the next clear, and frames of the old level after it."""
    latencies, stale = [], 0
    for n, sent in enumerate(model.interrupts):
        i = bisect.bisect_left(phone.clears, sent)
        if i == len(phone.clears):
            continue
        cleared = phone.clears[i]
        latencies.append(cleared - sent)
        old = "loud" if n % 2 == 0 else "soft"
        until = model.interrupts[n + 1] if n + 1 < len(model.interrupts) else float("inf")
        stale += sum(1 for t, lvl in phone.levels if cleared < t < until and lvl == old)
    return latencies, stale


def _serve(port: int, gemini_url: str, ca_file: str) -> None:
    """The media subprocess: the production app with in-memory core and telephony."""
    import uvicorn

    from media.server import create_app
    from media.settings import MediaSettings
    from telephony.settings import TwilioSettings
    from tests.fakes.core_link import InMemoryCore
    from tests.fakes.telephony import FakeTelephony

    class NullSink:
        async def deliver(self, event: object) -> None:
            return None

    twilio = TwilioSettings(twilio_auth_token=TOKEN, public_base_url=f"http://127.0.0.1:{port}")
    media = MediaSettings(
        internal_token="bench",
        pod_name="bench",
        gemini_api_key=GEMINI_KEY,
        gemini_base_url=gemini_url,
        gemini_ca_file=ca_file,
        silence_timeout_sec=3600,
        max_call_duration_sec=3600,
    )
    app = create_app(
        media, twilio, core_links=InMemoryCore(), phone=FakeTelephony(), sink=NullSink()
    )

    async def stats(request: Request) -> JSONResponse:
        bridges = app.state.registry.bridges.values()
        return JSONResponse(
            {
                "calls": len(bridges),
                "inbound_dropped": sum(b.inbound.dropped_frames for b in bridges),
                "frames_sent": sum(b.playout.stats.frames_sent for b in bridges),
                "frames_dropped_on_clear": sum(b.playout.stats.frames_dropped for b in bridges),
                "clears": sum(b.playout.stats.clears for b in bridges),
            }
        )

    app.web.router.routes.append(Route("/bench/stats", stats))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _run(calls: int, seconds: float) -> dict[str, Any]:
    gemini = LeanGemini()
    await gemini.start()
    env = dict(os.environ)
    deepgram = None
    if WITH_DEEPGRAM:
        from sim.deepgram_server import FakeDeepgram

        deepgram = FakeDeepgram()
        await deepgram.start()
        env |= {
            "DEEPGRAM_API_KEY": deepgram.api_key,
            "DEEPGRAM_WS_BASE": deepgram.ws_base,
            "DEEPGRAM_HTTP_BASE": deepgram.http_base,
        }
    ca = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
    gemini.write_ca(ca.name)
    from tests.conftest import free_port

    port = free_port()
    # BENCH_MEDIA_SERVE replaces the server command (e.g. a profiling wrapper script).
    serve = os.environ.get("BENCH_MEDIA_SERVE", "-m tests.bench.bench_media serve").split()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *serve, str(port), gemini.base_url, ca.name, env=env
    )
    media = psutil.Process(proc.pid)
    url = f"ws://127.0.0.1:{port}/twilio/stream"
    stop, model_stop = asyncio.Event(), asyncio.Event()
    phones: dict[str, PhoneSide] = {}
    groups: list[set[Phone]] = [set() for _ in range(TICKERS)]
    tasks = [
        asyncio.create_task(_tick(0.02, k * 0.004, groups[k], stop)) for k in range(TICKERS)
    ] + [
        asyncio.create_task(_tick(CHUNK_S, k * 0.008, gemini.speakers[k], model_stop))
        for k in range(TICKERS)
    ]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            rss_base = media.memory_info().rss
            me = psutil.Process()
            for n in range(calls):
                call_id = f"c{n}" + ("i" if n % 5 == 4 else "")
                phones[call_id] = PhoneSide()
                group = groups[n % TICKERS]
                tasks.append(
                    asyncio.create_task(_phone(url, call_id, phones[call_id], group, stop))
                )
                await asyncio.sleep(0.02)
            async with asyncio.timeout(30):
                while not gemini.all_speaking(calls):  # noqa: ASYNC110 - polls other processes
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            c0, my0, t0 = media.cpu_times(), sum(me.cpu_times()[:2]), time.monotonic()
            await asyncio.sleep(seconds)
            c1, my1, t1 = media.cpu_times(), sum(me.cpu_times()[:2]), time.monotonic()
            cpu0, cpu1 = c0.user + c0.system, c1.user + c1.system
            sys_share = (c1.system - c0.system) / max(1e-9, cpu1 - cpu0)
            rss = media.memory_info().rss
            live = len(gemini.calls)
            model_stop.set()
            await asyncio.sleep(0.5)
            server_stats = (await http.get("/bench/stats")).json()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.3)
    finally:
        proc.terminate()
        await proc.wait()
        await gemini.aclose()
        if deepgram is not None:
            await deepgram.aclose()
        os.unlink(ca.name)

    inbound, outbound, clears, greet = [], [], [], []
    stale = dropped_out = 0
    for call_id, phone in phones.items():
        model = gemini.calls.get(call_id)
        if model is None:
            continue
        inbound += _inbound_latencies(phone, model, t0, t1)
        if phone.media and model.sent:
            greet.append(phone.media[0] - model.sent[0])
        if model.interrupting:
            lat, n = _clear_figures(phone, model)
            clears += lat
            stale += n
        else:
            outbound += _outbound_latencies(phone, model, t0, t1)
            dropped_out += max(0, 2 * len(model.sent) - len(phone.media))
    window = t1 - t0
    return {
        "calls": live,
        "window_s": window,
        "cpu_ms_per_call_s": (cpu1 - cpu0) * 1000 / (live * window),
        "media_cpu_pct": (cpu1 - cpu0) * 100 / window,
        "media_sys_share": sys_share,
        "load_cpu_pct": (my1 - my0) * 100 / window,
        "rss_mb_per_call": (rss - rss_base) / live / 2**20,
        "rss_mb": rss / 2**20,
        "inbound_ms": [1000 * _pct(inbound, q) for q in (0.5, 0.99)],
        "outbound_ms": [1000 * _pct(outbound, q) for q in (0.5, 0.99)],
        "frames_out_dropped": dropped_out,
        "server": server_stats,
        "clear_ms": [1000 * _pct(clears, q) for q in (0.5, 0.99)],
        "clears_measured": len(clears),
        "stale_after_clear": stale,
        "greeting_ms": [1000 * _pct(greet, q) for q in (0.5, 0.99)],
        "greeting_max_ms": 1000 * max(greet) if greet else float("nan"),
    }


def main() -> None:
    import uvloop

    r = uvloop.run(_run(CALLS, SECONDS))
    load = os.getloadavg()[0]
    ear = " and the Deepgram ear" if WITH_DEEPGRAM else " (no Deepgram ear)"
    print(
        f"media process, {r['calls']} concurrent real-time calls{ear}, {r['window_s']:.1f} s window"
    )
    print(
        f"  CPU: {r['cpu_ms_per_call_s']:.2f} ms per call-second (target <= 10); media process "
        f"{r['media_cpu_pct']:.0f}% of a core ({r['media_sys_share']:.0%} in the kernel), "
        f"load generator {r['load_cpu_pct']:.0f}%, "
        f"1-min load average {load:.2f} on {os.cpu_count()} shared cores"
    )
    print(
        f"  RSS: {r['rss_mb_per_call']:.2f} MB per call (target <= 5), {r['rss_mb']:.0f} MB total"
    )
    print(
        "  added latency per frame, p50 / p99: Twilio -> Gemini "
        f"{r['inbound_ms'][0]:.1f} / {r['inbound_ms'][1]:.1f} ms, Gemini -> Twilio "
        f"{r['outbound_ms'][0]:.1f} / {r['outbound_ms'][1]:.1f} ms (target p99 <= 10)"
    )
    s = r["server"]
    print(
        f"  frames dropped: outbound {r['frames_out_dropped']} (steady calls), inbound "
        f"{s['inbound_dropped']} (while Gemini was connecting at call start)"
    )
    print(
        f"  interrupted -> clear, p50 / p99: {r['clear_ms'][0]:.1f} / {r['clear_ms'][1]:.1f} ms "
        f"over {r['clears_measured']} barge-ins (target p99 <= 5); stale frames after clear: "
        f"{r['stale_after_clear']}"
    )
    print(
        f"  first greeting frame after the model's first chunk, p50 / p99 / max: "
        f"{r['greeting_ms'][0]:.1f} / {r['greeting_ms'][1]:.1f} / {r['greeting_max_ms']:.1f} ms "
        "(target <= 50)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        _serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        main()
