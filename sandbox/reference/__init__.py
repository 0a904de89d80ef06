"""The reference marketplace over HTTP on loopback: channels for tests, the demo and benchmarks.

`create_app` builds the ASGI app; `python -m sandbox.reference` serves it (see cli.py). The API is
described in api.py, the control API in control.py, the fault knobs in faults.py.
"""

from sandbox.reference.app import SandboxApp, create_app
from sandbox.reference.channel import ApiError, ChannelOptions, Parcel, SandboxChannel
from sandbox.reference.cli import TOKEN_ENV, parse_channel
from sandbox.reference.faults import OPERATIONS, Fault, FaultSettings, OperationFaults
from sandbox.reference.serve import bind_loopback, serve

__all__ = [
    "OPERATIONS",
    "TOKEN_ENV",
    "ApiError",
    "ChannelOptions",
    "Fault",
    "FaultSettings",
    "OperationFaults",
    "Parcel",
    "SandboxApp",
    "SandboxChannel",
    "bind_loopback",
    "create_app",
    "parse_channel",
    "serve",
]
