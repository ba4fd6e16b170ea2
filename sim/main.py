"""The simulated world process (`make run` starts it when no Twilio credentials are set)."""

from __future__ import annotations

import asyncio
import logging
import signal

from core.settings import get_settings
from sim.carrier import SimCarrier
from sim.twilio_rest import FakeTwilioRest


async def serve() -> None:
    settings = get_settings()
    if settings.twilio_account_sid is None or settings.twilio_auth_token is None:
        raise SystemExit("sim needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (make run sets them)")
    async with FakeTwilioRest(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        port=settings.sim_twilio_port,
    ) as rest:
        carrier = SimCarrier(rest, speed=settings.sim_speed, talk_seconds=settings.sim_talk_seconds)
        print(f"sim: Twilio REST on {rest.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await carrier.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
