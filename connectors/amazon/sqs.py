"""The SQS consumer of ORDER_CHANGE notifications: long-poll, parse, delete only when told.

Amazon delivers ORDER_CHANGE only to an SQS queue. SQS is at-least-once and unordered, keeps a
message 4 days by default, and hides a received one for the visibility timeout. So:
- `receive` long-polls (WaitTimeSeconds 20) and answers the messages that parse, each with its
  dedupe key (NotificationId), its order id and its receipt handle;
- a message that does not parse is logged with its SQS message id (never its body) and left
  alone: it comes back after the visibility timeout and the queue's redrive policy moves it to
  the dead-letter queue after maxReceiveCount receives;
- nothing is deleted until the caller says its commit happened (`delete`); dedupe is the
  caller's, through the webhook inbox keyed by the notification id.

The caller (the daemon) runs, per channel with a queue:

    async with consumer:
        async for batch in consumer.batches():
            for item in batch:
                record the notice in the inbox (deduped by notification id)
            commit, then: await consumer.delete(batch)   # only after that commit
        the inbox worker then ingests the summary's order (complete summaries, see
        mapper_notice.py) or reads the order with getOrder and ingests that

The AWS client is aiobotocore (botocore's own retries for transient AWS errors, standard mode);
its endpoint is configurable, so tests run it against moto's server on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from connectors.amazon.const import SQS_MAX_MESSAGES, SQS_WAIT_S
from connectors.amazon.notifications import (
    NotificationError,
    OrderChangeNotice,
    parse_order_change,
)
from connectors.errors import AuthError, ConnectorError, PermanentError, RetryableError

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

log = logging.getLogger(__name__)

_QUEUE_HOST = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
    }
)
_MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "InvalidAddress"}
)
_DELETE_BATCH = 10  # DeleteMessageBatch takes at most ten entries
_BACKOFF_BASE_S = 1.0
_BACKOFF_CAP_S = 60.0
_LOGGED_BAD = 1000  # message ids of unreadable messages remembered, so each is logged once


@dataclass(frozen=True)
class SqsSettings:
    """Where the queue is and how to read it."""

    queue_url: str
    region: str  # used when the queue URL names none (a loopback server)
    endpoint_url: str | None = None
    access_key_id: str | None = None  # unset: the AWS default chain (env, profile, role)
    secret_access_key: str | None = None
    wait_s: int = SQS_WAIT_S
    max_messages: int = SQS_MAX_MESSAGES
    visibility_timeout_s: int = 120  # time to fetch and commit a batch before it comes back

    def __repr__(self) -> str:
        return f"SqsSettings(queue_url={self.queue_url!r}, endpoint_url={self.endpoint_url!r}, ...)"

    @property
    def region_name(self) -> str:
        """The queue's own region when its URL is an AWS one, else `region`."""
        found = _QUEUE_HOST.match(self.queue_url)
        return found.group(1) if found else self.region


@dataclass(frozen=True)
class QueuedNotice:
    """A parsed notification still on the queue: delete it (by its receipt) after the commit."""

    notice: OrderChangeNotice
    message_id: str
    receipt_handle: str
    receive_count: int = 1


class OrderChangeConsumer:
    """Reads one channel's ORDER_CHANGE queue. Use as `async with`."""

    def __init__(
        self,
        settings: SqsSettings,
        *,
        channel: str,
        session: AioSession | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self._session = session or get_session()
        self._sleep = sleep
        self._stack = AsyncExitStack()
        self._client: SQSClient | None = None
        self._logged_bad: OrderedDict[str, None] = OrderedDict()

    async def __aenter__(self) -> OrderChangeConsumer:
        settings = self.settings
        self._client = await self._stack.enter_async_context(
            self._session.create_client(
                "sqs",
                region_name=settings.region_name,
                endpoint_url=settings.endpoint_url,
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=settings.secret_access_key,
                # The long poll holds a request open for wait_s: read well past it.
                config=AioConfig(
                    read_timeout=settings.wait_s + 30,
                    connect_timeout=10,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        self._client = None

    def _sqs(self) -> SQSClient:
        if self._client is None:
            raise RuntimeError("OrderChangeConsumer is used outside `async with`")
        return self._client

    async def receive(self) -> list[QueuedNotice]:
        """One long poll: the notifications that parse (unreadable ones are logged and left)."""
        settings = self.settings
        try:
            answer = await self._sqs().receive_message(
                QueueUrl=settings.queue_url,
                WaitTimeSeconds=settings.wait_s,
                MaxNumberOfMessages=settings.max_messages,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                VisibilityTimeout=settings.visibility_timeout_s,
            )
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, "ReceiveMessage") from err
        found = []
        for message in answer.get("Messages") or ():
            message_id = message.get("MessageId", "?")
            receipt = message.get("ReceiptHandle")
            if not receipt:
                continue
            try:
                notice = parse_order_change(message.get("Body", ""))
            except NotificationError as err:
                self._log_unreadable(message_id, str(err))
                continue
            count = (message.get("Attributes") or {}).get("ApproximateReceiveCount", "1")
            found.append(
                QueuedNotice(
                    notice=notice,
                    message_id=message_id,
                    receipt_handle=receipt,
                    receive_count=int(count) if str(count).isdigit() else 1,
                )
            )
        return found

    async def delete(self, items: Sequence[QueuedNotice]) -> int:
        """Delete these messages (their commit happened); answer how many SQS deleted. A receipt
        that expired meanwhile fails alone: that message comes back and is deduped then."""
        deleted = 0
        for start in range(0, len(items), _DELETE_BATCH):
            chunk = items[start : start + _DELETE_BATCH]
            try:
                answer = await self._sqs().delete_message_batch(
                    QueueUrl=self.settings.queue_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": item.receipt_handle}
                        for index, item in enumerate(chunk)
                    ],
                )
            except (ClientError, BotoCoreError) as err:
                raise self._error(err, "DeleteMessageBatch") from err
            deleted += len(answer.get("Successful") or ())
            failed = answer.get("Failed") or ()
            if failed:
                codes = sorted({str(entry.get("Code")) for entry in failed})
                log.warning(
                    "channel %s: SQS kept %d of %d messages (%s); they come back and are deduped",
                    self.channel,
                    len(failed),
                    len(chunk),
                    ", ".join(codes),
                )
        return deleted

    async def batches(self) -> AsyncIterator[list[QueuedNotice]]:
        """Long-poll forever, answering each non-empty batch; transient failures back off (logged
        when they start and when they end); AuthError and PermanentError end the loop."""
        failures = 0
        while True:
            try:
                batch = await self.receive()
            except RetryableError as err:
                failures += 1
                if failures == 1:
                    log.warning("channel %s: SQS receive failing: %s", self.channel, err)
                cap = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** min(failures, 10))
                await self._sleep(random.uniform(0, cap))
                continue
            if failures:
                log.info("channel %s: SQS receive works again", self.channel)
                failures = 0
            if batch:
                yield batch

    def _log_unreadable(self, message_id: str, reason: str) -> None:
        if message_id in self._logged_bad:
            log.debug("channel %s: SQS message %s unreadable again", self.channel, message_id)
            return
        self._logged_bad[message_id] = None
        if len(self._logged_bad) > _LOGGED_BAD:
            self._logged_bad.popitem(last=False)
        log.warning(
            "channel %s: SQS message %s is not a readable ORDER_CHANGE (%s); left on the queue "
            "for its dead-letter policy",
            self.channel,
            message_id,
            reason,
        )

    def _error(self, err: ClientError | BotoCoreError, operation: str) -> ConnectorError:
        if isinstance(err, NoCredentialsError):
            return AuthError(
                "no AWS credentials for the SQS queue (set them in the channel file or the "
                "AWS environment)",
                channel=self.channel,
                operation=operation,
            )
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            message = f"SQS {code or 'error'}"
            if code in _AUTH_CODES:
                return AuthError(
                    f"{message}: AWS refused the credentials for the queue",
                    channel=self.channel,
                    operation=operation,
                )
            if code in _MISSING_QUEUE_CODES:
                return PermanentError(
                    f"{message}: no such queue (check sqs_queue_url)",
                    channel=self.channel,
                    operation=operation,
                )
            return RetryableError(message, channel=self.channel, operation=operation)
        return RetryableError(type(err).__name__, channel=self.channel, operation=operation)
