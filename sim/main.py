"""The simulated world process (`make run` starts it when provider credentials are missing).

One process, one event loop, one `World`: Twilio REST + the carrier, the Gemini Live
stand-in (TLS, with the simulated agent behind it), the Gemini REST stand-in (core's
post-call classifier, answering from the world's truth) and the Deepgram stand-in (live and
batch). On start it prints the environment media and core need (`sim.settings.media_env`,
`core_env`). The venues come from the scenario files (`sim.scenario_files`, plus
`SIM_SCENARIOS_DIR`); a bad one stops the process before any port opens.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from sim.agent_session import SimAgents
from sim.carrier import SimCarrier
from sim.deepgram_server import FakeDeepgram
from sim.gemini_live_server import FakeGeminiLive
from sim.gemini_rest_server import FakeGeminiRest
from sim.outcome_truth import WorldOutcomes
from sim.scenario_files import ScenarioError, Scenarios, load
from sim.settings import SimSettings, core_env, ensure_tls_files, media_env
from sim.twilio_rest import FakeTwilioRest
from sim.world import World, WorldTranscripts


async def serve(settings: SimSettings, scenarios: Scenarios) -> None:
    if settings.twilio_account_sid is None or settings.twilio_auth_token is None:
        raise SystemExit("sim needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (make run sets them)")
    tls = ensure_tls_files(settings.callagent_data_dir)
    world = World(speed=settings.sim_speed, word_ms=settings.sim_word_ms)
    agents = SimAgents(world, customer_timeout_s=settings.sim_customer_timeout_sec)
    gemini = FakeGeminiLive(
        api_key=settings.sim_gemini_api_key.get_secret_value(),
        port=settings.sim_gemini_port,
        cert_chain_file=str(tls.cert_chain_file),
        ca_file=str(tls.ca_file),
        agent=agents,
    )
    deepgram = FakeDeepgram(
        settings.sim_deepgram_api_key.get_secret_value(),
        ws_port=settings.sim_deepgram_port,
        http_port=settings.sim_deepgram_http_port,
        source=WorldTranscripts(world),
        keep_sessions=False,
        strict=False,  # refusals still happen; violations are logged, not raised at exit
    )
    rest_model = FakeGeminiRest(
        settings.sim_gemini_api_key.get_secret_value(),
        source=WorldOutcomes(world),
        port=settings.sim_gemini_rest_port,
    )
    rest_model.keep_requests = False  # long-running: remember nothing per request
    async with (
        FakeTwilioRest(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            port=settings.sim_twilio_port,
            max_recordings=200,
        ) as rest,
        gemini,
        rest_model,
        deepgram,
    ):
        carrier = SimCarrier(
            rest,
            world=world,
            talk_seconds=settings.sim_talk_seconds,
            media_streams=settings.sim_media_streams,
            scenarios=scenarios,
        )
        print(f"sim: Twilio REST on {rest.base_url}", flush=True)
        print(f"sim: Gemini Live on {gemini.base_url}", flush=True)
        print(f"sim: Gemini generateContent on {rest_model.base_url}", flush=True)
        print(
            f"sim: Deepgram on {deepgram.ws_base} (live), {deepgram.http_base} (batch)", flush=True
        )
        for name, value in media_env(settings).items():
            shown = "(set)" if name.endswith("_API_KEY") else value
            print(f"sim: media env {name}={shown}", flush=True)
        print(
            f"sim: core env ANALYSIS_BASE_URL={core_env(settings)['ANALYSIS_BASE_URL']}", flush=True
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await carrier.aclose()


def main() -> None:
    settings = SimSettings()
    try:
        scenarios = load(settings.sim_scenarios_dir)
    except ScenarioError as exc:
        # One line naming the file, the line and the reason; the exit status is 1.
        raise SystemExit(f"sim: scenario file refused: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    print(
        f"sim: {len(scenarios.venues)} venues + the default ({scenarios.default.name})", flush=True
    )
    asyncio.run(serve(settings, scenarios))


if __name__ == "__main__":
    main()
