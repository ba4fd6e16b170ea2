"""Tests use the simulated carrier's Twilio REST server as their Twilio fake."""

from sim.loopback import LoopbackServer
from sim.twilio_rest import SILENT_MP3_FRAME, FakeCall, FakeTwilioRest, RecordedForm

__all__ = ["SILENT_MP3_FRAME", "FakeCall", "FakeTwilioRest", "LoopbackServer", "RecordedForm"]
