"""The `callagent` console script: the API client commands and the operator commands.

Client commands (`call`, `calls`, `bookings`) speak only the public REST/SSE API;
`doctor` and `smoke` check the real providers' credentials and place a first real call. The
operator commands (`keys`, `maintenance`, `telegram-link`) are core's own `core.ops`,
run against the database by design: this is the one place `cli` imports from `core`.
"""

from __future__ import annotations

import typer

from cli import client, doctor
from core import ops

app = typer.Typer(help="callagent operator and client commands.", no_args_is_help=True)
app.add_typer(ops.app)  # unnamed: keys, maintenance and telegram-link sit at the top level
client.register(app)
doctor.register(app)

if __name__ == "__main__":
    app(prog_name="callagent")
