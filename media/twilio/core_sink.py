"""Carrier callbacks → core, over the internal TelephonyEventService."""

from __future__ import annotations

import grpc
from callagent.v1 import telephony_pb2, telephony_pb2_grpc

from media.twilio.webhooks import TelephonyEvent

INTERNAL_TOKEN_HEADER = "x-internal-token"


class CoreTelephonySink:
    """A `TelephonySink` that hands every valid callback to core (which owns the rules)."""

    def __init__(self, channel: grpc.aio.Channel, internal_token: str) -> None:
        self._stub = telephony_pb2_grpc.TelephonyEventServiceStub(channel)
        self._metadata = ((INTERNAL_TOKEN_HEADER, internal_token),)

    async def deliver(self, event: TelephonyEvent) -> None:
        request = telephony_pb2.ReportTelephonyEventRequest(
            kind=event.kind,
            call_sid=event.call_sid,
            call_id=event.call_id or "",
            status=event.status or "",
            sequence_number=event.sequence_number,
            duration_sec=event.duration_sec,
            answered_by=event.answered_by,
            recording_sid=event.recording_sid,
            recording_url=event.recording_url,
            recording_duration_sec=event.recording_duration,
            recording_status=event.recording_status,
        )
        try:
            # wait_for_ready: a core that is (re)starting is waited for, within the timeout.
            await self._stub.ReportTelephonyEvent(
                request, metadata=self._metadata, timeout=5, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as err:
            # A call core does not know (or a stale event) is not worth a Twilio retry.
            if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                return
            raise
