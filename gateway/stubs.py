"""The gRPC stubs every route calls, over the one channel to core the app opens.

Routes take them as a FastAPI dependency (`Core`), so a route module needs neither
the channel nor the settings; the app's lifespan owns the channel.
"""

from __future__ import annotations

from typing import Annotated

import grpc
from callagent.v1 import (
    accounts_pb2_grpc,
    bookings_pb2_grpc,
    calls_pb2_grpc,
    skills_pb2_grpc,
)
from fastapi import Depends, Request
from grpc_health.v1 import health_pb2_grpc

CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class Stubs:
    """gRPC stubs over the one shared channel to core."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.accounts = accounts_pb2_grpc.AccountServiceStub(channel)
        self.bookings = bookings_pb2_grpc.BookingServiceStub(channel)
        self.calls = calls_pb2_grpc.CallServiceStub(channel)
        self.skills = skills_pb2_grpc.SkillServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)


def stubs(request: Request) -> Stubs:
    value: Stubs = request.app.state.stubs
    return value


Core = Annotated[Stubs, Depends(stubs)]
