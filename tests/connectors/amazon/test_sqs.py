"""The ORDER_CHANGE consumer against a real SQS-compatible server (moto's, on 127.0.0.1).

Nothing here mocks the AWS client: the consumer long-polls, receives and deletes over HTTP, and
the queue's own visibility timeout and redrive policy decide what comes back and what moves to
the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from connectors.amazon import OrderChangeConsumer, SqsSettings, const
from connectors.errors import PermanentError, RetryableError

pytestmark = pytest.mark.anyio
KEY = "test-access-key"
SECRET = "test-secret-key"


def notification(notification_id: str, order_id: str) -> str:
    return json.dumps(
        {
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": "2026-02-01T12:00:00.000Z",
            "Payload": {
                "OrderChangeNotification": {
                    "NotificationLevel": "OrderLevel",
                    "SellerId": "A1SELLERTEST",
                    "AmazonOrderId": order_id,
                    "OrderChangeType": "OrderStatusChange",
                    "Summary": {"OrderStatus": "Unshipped", "DestinationPostalCode": "48110"},
                }
            },
            "NotificationMetadata": {"NotificationId": notification_id},
        }
    )


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class Queue:
    """A fresh queue (with a dead-letter queue) on the loopback server, and a raw client to it."""

    def __init__(self, client: Any, url: str, dead_letter_url: str, endpoint: str) -> None:
        self.client = client
        self.url = url
        self.dead_letter_url = dead_letter_url
        self.endpoint = endpoint

    async def send(self, body: str) -> str:
        answer = await self.client.send_message(QueueUrl=self.url, MessageBody=body)
        return str(answer["MessageId"])

    async def counts(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages."""
        attributes = (
            await self.client.get_queue_attributes(
                QueueUrl=url or self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def consumer(self, **overrides: Any) -> OrderChangeConsumer:
        values: dict[str, Any] = {
            "queue_url": self.url,
            "region": "us-east-1",
            "endpoint_url": self.endpoint,
            "access_key_id": KEY,
            "secret_access_key": SECRET,
            "wait_s": 5,
            "visibility_timeout_s": 1,
        }
        values.update(overrides)
        return OrderChangeConsumer(SqsSettings(**values), channel="amazon-us")


@pytest.fixture
async def queue(sqs_endpoint: str) -> AsyncIterator[Queue]:
    session = get_session()
    async with session.create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=sqs_endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    ) as client:
        name = f"order-change-{uuid.uuid4().hex[:8]}"
        dead = await client.create_queue(QueueName=f"{name}-dlq")
        arn = (
            await client.get_queue_attributes(
                QueueUrl=dead["QueueUrl"], AttributeNames=["QueueArn"]
            )
        )["Attributes"]["QueueArn"]
        created = await client.create_queue(
            QueueName=name,
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"})
            },
        )
        yield Queue(client, created["QueueUrl"], dead["QueueUrl"], sqs_endpoint)


def test_defaults_long_poll_for_twenty_seconds() -> None:
    settings = SqsSettings(queue_url="https://sqs.eu-west-1.amazonaws.com/1/q", region="us-east-1")
    assert settings.wait_s == const.SQS_WAIT_S == 20
    assert settings.region_name == "eu-west-1"  # the queue's own region wins
    assert "secret" not in repr(SqsSettings(queue_url="q", region="r", secret_access_key="s"))


async def test_notices_come_with_their_keys_and_stay_until_deleted(queue: Queue) -> None:
    await queue.send(notification("n-1", "114-0000000-0000001"))
    await queue.send(notification("n-1", "114-0000000-0000001"))  # SQS repeats itself
    async with queue.consumer() as consumer:
        first = await consumer.receive()
        assert [(q.notice.notification_id, q.notice.order_id) for q in first] == [
            ("n-1", "114-0000000-0000001")
        ] * len(first)
        seen = list(first)
        while len(seen) < 2:
            seen += await consumer.receive()
        assert all(item.receipt_handle for item in seen)
        assert await queue.counts() == (0, 2)
        # Not deleted: once the visibility timeout passes, SQS hands them out again.
        again: list[Any] = []
        while len(again) < 2:
            again += await consumer.receive()
        assert {item.message_id for item in again} == {item.message_id for item in seen}
        assert all(item.receive_count == 2 for item in again)
        assert await consumer.delete(again) == 2
    assert await queue.counts() == (0, 0)


async def test_a_receive_waits_for_the_next_message(queue: Queue) -> None:
    async with queue.consumer(wait_s=10) as consumer:
        waiting = asyncio.create_task(consumer.receive())
        await queue.send(notification("n-9", "114-0000000-0000009"))
        (item,) = await asyncio.wait_for(waiting, timeout=15)
    assert item.notice.notification_id == "n-9"


async def test_unreadable_messages_are_logged_by_id_and_left_to_the_dead_letter_queue(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    bad_id = await queue.send("<xml>Jane Buyer, 1 Main St</xml>")
    await queue.send(notification("n-2", "114-0000000-0000002"))
    caplog.set_level(logging.DEBUG, logger="connectors.amazon.sqs")
    async with queue.consumer(wait_s=2) as consumer:
        readable: list[Any] = []
        while not readable:
            readable += await consumer.receive()
        assert [item.notice.notification_id for item in readable] == ["n-2"]
        await consumer.delete(readable)
        # The unreadable one comes back after each visibility timeout, is never handed out, and
        # after maxReceiveCount (2) the queue's redrive policy moves it aside.
        while await queue.counts(queue.dead_letter_url) == (0, 0):
            assert await consumer.receive() == []
    assert await queue.counts() == (0, 0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, not at every redelivery
    assert bad_id in caplog.text and "not a readable ORDER_CHANGE" in caplog.text
    assert "Jane" not in caplog.text and "Main St" not in caplog.text


async def test_batches_hand_out_what_arrives(queue: Queue) -> None:
    for n in range(3):
        await queue.send(notification(f"n-{n}", f"114-0000000-000000{n}"))
    got: list[str] = []
    async with queue.consumer() as consumer:
        async for batch in consumer.batches():
            got += [item.notice.notification_id for item in batch]
            await consumer.delete(batch)
            if len(got) >= 3:
                break
    assert sorted(got) == ["n-0", "n-1", "n-2"]
    assert await queue.counts() == (0, 0)


async def test_a_missing_queue_is_permanent(queue: Queue) -> None:
    missing = queue.url.rsplit("/", 1)[0] + "/no-such-queue"
    async with queue.consumer(queue_url=missing) as consumer:
        with pytest.raises(PermanentError, match="no such queue"):
            await consumer.receive()


async def test_an_unreachable_server_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = SqsSettings(
        queue_url=f"http://127.0.0.1:{port}/123456789012/q",
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id=KEY,
        secret_access_key=SECRET,
        wait_s=1,
    )
    async with OrderChangeConsumer(settings, channel="amazon-us") as consumer:
        with pytest.raises(RetryableError):
            await consumer.receive()
