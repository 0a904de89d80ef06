"""The loopback SQS side of the sandbox: a sink that sends notification bodies to a queue with
aiobotocore, queue creation, and moto's SQS-compatible server started in this process.

moto (the `moto[server]` package) is imported only when the runner starts it (`--start-sqs`);
given `--sqs-endpoint URL`, any SQS-compatible server on loopback will do. Credentials are dummies:
loopback servers do not check signatures.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiobotocore.session import get_session

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

REGION = "us-east-1"
DUMMY_KEY = "sandbox"  # loopback SQS servers do not check it


@contextlib.asynccontextmanager
async def sqs_client(endpoint_url: str) -> AsyncIterator[SQSClient]:
    """An aiobotocore SQS client on `endpoint_url`."""
    session = get_session()
    async with session.create_client(
        "sqs",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
    ) as client:
        yield client


async def create_queue(endpoint_url: str, name: str) -> str:
    """Create (or find) a queue; its URL."""
    async with sqs_client(endpoint_url) as client:
        answer = await client.create_queue(QueueName=name)
    url: str = answer["QueueUrl"]
    return url


class SqsSink:
    """Sends notification bodies to one queue; the client is opened on the first send."""

    def __init__(self, endpoint_url: str, queue_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.queue_url = queue_url
        self._stack = contextlib.AsyncExitStack()
        self._client: SQSClient | None = None

    async def send(self, body: str) -> None:
        """SendMessage with the body."""
        client = self._client
        if client is None:
            client = await self._stack.enter_async_context(sqs_client(self.endpoint_url))
            self._client = client
        await client.send_message(QueueUrl=self.queue_url, MessageBody=body)

    async def aclose(self) -> None:
        """Close the client."""
        self._client = None
        await self._stack.aclose()


@dataclass
class MotoServer:
    """moto's server, in a thread of this process, on a loopback port."""

    server: Any
    endpoint_url: str

    def stop(self) -> None:
        """Shut it down."""
        self.server.stop()


def start_moto(host: str = "127.0.0.1") -> MotoServer:
    """Start moto's server on `host` and any free port (ImportError when moto is absent)."""
    from moto.server import ThreadedMotoServer  # only the runner's --start-sqs needs moto

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return MotoServer(server, f"http://{shown}:{port}")
