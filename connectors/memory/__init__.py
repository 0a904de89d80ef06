"""The reference connector: an in-memory marketplace, and the Connector that speaks to it."""

from connectors.memory.connector import MemoryConnector
from connectors.memory.marketplace import (
    CLOCK_START,
    OPERATIONS,
    FakeClock,
    FaultPlan,
    FaultRates,
    Faults,
    MemoryMarketplace,
    OutOfStockError,
    ReceivedCancel,
    ReceivedFulfillment,
)

__all__ = [
    "CLOCK_START",
    "OPERATIONS",
    "FakeClock",
    "FaultPlan",
    "FaultRates",
    "Faults",
    "MemoryConnector",
    "MemoryMarketplace",
    "OutOfStockError",
    "ReceivedCancel",
    "ReceivedFulfillment",
]
