"""The Kafka adapter of the EventBus port (aiokafka).

Raw aiokafka rather than FastStream, for the reasons the other adapters give: the inbox
handles a batch in one database transaction and returns a verdict per message, and the relay
awaits a whole outbox batch's acknowledgements together.

Layout, every name under the namespace (``mercato`` by default):

- A topic per event type, ``{ns}.{EventType}`` (``mercato.OrderCreated``), created by the bus
  with ``MERCATO_KAFKA_PARTITIONS`` partitions and ``MERCATO_KAFKA_REPLICAS`` copies when first
  published to or subscribed to. The key is the event's subject (the aggregate id), so every
  event of one type about one order lands on one partition, in publish order. Why per type and
  not per publishing service: the port's patterns name event types (``*.OrderCreated``), not
  publishers, so a consumer group subscribes to exactly the topics of the types it handles and
  is fetched nothing else. A topic per publisher would keep one aggregate's events of
  *different* types in order too, but every group would read all of a publisher's events to
  use a few (payment would read the order service's five OrderStatusChanged per order to use
  OrderCreated and OrderCancelled). What per type costs: events of different types about one
  aggregate may be handled out of order (OrderCancelled before OrderCreated), as on NATS,
  where each pattern is a consumer of its own; the handlers tolerate that (docs/events.md).
- The route value (OrderStatusChanged's status) is not in the topic: a group bound to one
  status (shipping: RESERVED) is fetched every OrderStatusChanged and the bus skips the others
  before the processor (no transaction, no inbox row; their offsets are committed with the
  batch). Splitting the topic by status would spare that fetch but lose the order of one
  order's status changes for the groups that take them all.
- A consumer group per service, ``{ns}.{consumer}``, shared by its replicas: each partition is
  read by one replica at a time, so a service scales to as many replicas as partitions. A new
  group starts at the earliest offset: nothing published before a service first ran is lost
  (the inbox drops what it has seen).
- Offsets are committed only after the processor returns, that is after the inbox transaction
  committed (or the dead letter was stored). A Retry verdict pauses the message's partition,
  commits up to it, and after the delay seeks back to it: the partition waits for it (per
  aggregate order holds through retries), the other partitions go on, and the messages after
  it in that partition come again and are skipped by the inbox. The attempt count is kept by
  the replica that reads the partition; a partition moved to another replica starts counting
  again (more attempts, never fewer).
- Messages travel in the CloudEvents Kafka binding, binary mode: the payload is the value, the
  attributes are ``ce_*`` headers, ``content-type`` is the data's, and the ``partitionkey``
  extension (the subject) is the key and a ``ce_partitionkey`` header. The platform's topic
  (``order.OrderStatusChanged.RESERVED``) travels in a ``mercato_topic`` header, which the
  status filter reads.
- ``send`` (a replay to one service) writes to the topic ``{ns}.direct.{consumer}``, created
  when the consumer first subscribes and read by its group besides its event topics; what
  comes there is handed over unfiltered (past every binding, as on the other buses).
- The producer waits for all in-sync replicas (``acks=all``) and is idempotent unless
  ``MERCATO_KAFKA_IDEMPOTENCE=0`` (for brokers without ``InitProducerId``, such as Tansu).

Not done on Kafka: a broker-side delivery limit. RabbitMQ and NATS count deliveries themselves
and give up on a message that keeps killing its consumer's process; Kafka keeps no such count,
so such a message is read again at each restart (docs/operations.md). (A count kept in the
offset commit's metadata would do on Apache Kafka; Tansu, the broker the tests run on, drops
that metadata, so it could not be tested.)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from mercato.platform.bus.port import (
    Processor,
    RawMessage,
    Retry,
    Subscription,
    Verdict,
    check_subscription,
    topic_matches,
)
from mercato.platform.envelope import KAFKA_PREFIX, Envelope
from mercato.platform.settings import broker_urls
from mercato.platform.waits import within

log = structlog.get_logger(__name__)

TOPIC_HEADER = "mercato_topic"
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_TOPIC_EXISTS = 36  # the CreateTopics error code for "already exists"


def kafka_topic(namespace: str, topic: str) -> str:
    """The Kafka topic of a platform topic: ``order.OrderCreated`` → ``{ns}.OrderCreated``."""
    words = topic.split(".")
    if len(words) < 2 or not all(_NAME.fullmatch(w) for w in words):
        raise ValueError(f"invalid topic {topic!r}: <service>.<EventType>[.<route value>]")
    return f"{namespace}.{words[1]}"


def direct_topic(namespace: str, consumer: str) -> str:
    """Where ``send`` puts what is addressed to ``consumer`` alone."""
    if not _NAME.fullmatch(consumer):
        raise ValueError(f"consumer {consumer!r}: letters, digits, '-' and '_' only")
    return f"{namespace}.direct.{consumer}"


def subscription_of(
    namespace: str, patterns: Sequence[str], consumer: str
) -> tuple[list[str], str | None]:
    """The Kafka topics a group subscribes to for ``patterns`` (and its direct topic), or
    (when a pattern leaves the event type open, as the audit log's ``#``) a regular expression
    of every event topic and its direct topic."""
    direct = direct_topic(namespace, consumer)
    topics: list[str] = [direct]
    for pattern in patterns:
        words = pattern.split(".")
        for word in words:
            if word not in ("*", "#") and not _NAME.fullmatch(word):
                raise ValueError(f"invalid pattern {pattern!r}")
        if words[0] == "#" or len(words) < 2 or words[1] in ("*", "#"):
            every = rf"{re.escape(namespace)}\.[A-Za-z0-9_-]+"
            return [direct], rf"^({every}|{re.escape(direct)})$"
        topics.append(f"{namespace}.{words[1]}")
    return sorted(set(topics)), None


def bootstrap_servers(urls: Sequence[str]) -> list[str]:
    """``kafka://h1:9092,h2:9092`` → ``["h1:9092", "h2:9092"]`` (9092 when no port is given)."""
    servers = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        servers.append(f"{host}:{parts.port or 9092}")
    return servers


class KafkaBus:
    prefix = KAFKA_PREFIX

    def __init__(
        self,
        url: str | Sequence[str],
        namespace: str = "mercato",
        *,
        idempotence: bool = True,
        partitions: int = 3,
        replicas: int = 1,
        timeout: float = 15.0,
        metadata_max_age: float = 5.0,
    ):
        if not _NAME.fullmatch(namespace):
            raise ValueError(f"namespace {namespace!r}: letters, digits, '-' and '_' only")
        self.urls = list(broker_urls(url) if isinstance(url, str) else url)
        self.servers = bootstrap_servers(self.urls)
        self.url = ",".join(self.servers)
        self.namespace = namespace
        self.idempotence = idempotence
        self.partitions = partitions
        self.replicas = replicas
        # Bounds every wait on the broker, so a silent broker is a failed publish the relay
        # retries, never a hang.
        self.timeout = timeout
        # How soon a regex subscription (the audit log's) sees a topic created after it.
        self.metadata_max_age = metadata_max_age
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._creating = asyncio.Lock()
        self._subscriptions: list[Subscription] = []

    # -- connection ------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._producer is not None:
            return
        ms = int(self.timeout * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.servers,
            client_id=f"mercato-{self.namespace}",
            acks="all",
            enable_idempotence=self.idempotence,
            request_timeout_ms=ms,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.servers,
            client_id=f"mercato-{self.namespace}-admin",
            request_timeout_ms=ms,
        )
        try:
            await within(self.timeout, producer.start())
            await within(self.timeout, admin.start())
        except Exception as exc:
            with contextlib.suppress(Exception):
                await within(self.timeout, producer.stop())
            with contextlib.suppress(Exception):
                await within(self.timeout, admin.close())
            raise ConnectionError(f"cannot reach Kafka at {self.url}: {exc!r}") from exc
        self._producer, self._admin = producer, admin

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            with contextlib.suppress(Exception):
                await within(self.timeout, producer.stop())
        if admin is not None:
            with contextlib.suppress(Exception):
                await within(self.timeout, admin.close())

    async def ping(self) -> None:
        try:
            await within(self.timeout, self._admin_client().list_topics())
        except ConnectionError:
            raise
        except Exception as exc:
            raise ConnectionError(f"Kafka at {self.url} is unavailable: {exc!r}") from exc

    def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise ConnectionError("KafkaBus is not connected: call connect() first")
        return self._admin

    async def ensure_topics(self, names: Sequence[str]) -> None:
        """Create the topics not known to exist yet (an existing one is taken as it is)."""
        missing = sorted(set(names) - self._topics)
        if not missing:
            return
        async with self._creating:
            missing = sorted(set(missing) - self._topics)
            if not missing:
                return
            response = await within(
                self.timeout,
                self._admin_client().create_topics(
                    [NewTopic(name, self.partitions, self.replicas) for name in missing]
                ),
            )
            for name, code, message in response.topic_errors:
                if code not in (0, _TOPIC_EXISTS):
                    raise RuntimeError(
                        f"Kafka refused to create topic {name} with {self.partitions} "
                        f"partition(s) and {self.replicas} replica(s) (MERCATO_KAFKA_PARTITIONS, "
                        f"MERCATO_KAFKA_REPLICAS): error {code} {message or ''}".rstrip()
                    )
            self._topics.update(missing)

    async def delete_namespace(self) -> None:
        """Delete this namespace's topics and consumer groups (tests use throwaway ones)."""
        admin = self._admin
        if admin is None:
            return
        try:
            topics = [t for t in await admin.list_topics() if t.startswith(self.namespace + ".")]
            if topics:
                await within(self.timeout, admin.delete_topics(topics))
            groups = [
                g[0] for g in await admin.list_consumer_groups() if g[0].startswith(self.namespace)
            ]
            if groups:
                await within(self.timeout, admin.delete_consumer_groups(groups))
        except Exception as exc:  # a test broker that cannot: it keeps nothing anyway
            log.info("cannot clean up the namespace", namespace=self.namespace, error=repr(exc))
        self._topics.clear()

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        producer = self._producer
        if not batch:
            return []
        if producer is None:
            log.warning("publish while Kafka is not connected", messages=len(batch))
            return [False] * len(batch)
        try:
            targets = [kafka_topic(self.namespace, topic) for topic, _ in batch]
            await self.ensure_topics(targets)
        except Exception as exc:
            log.warning("publish failed: cannot create its topics", error=repr(exc))
            return [False] * len(batch)
        return await self._produce(producer, targets, batch)

    async def _produce(
        self,
        producer: AIOKafkaProducer,
        targets: Sequence[str],
        batch: Sequence[tuple[str, Envelope]],
    ) -> list[bool]:
        """Write each event to its Kafka topic, in order; the acknowledgements are awaited
        together (send() only queues a record, in call order, so one partition's records go
        out in batch order)."""
        sent: list[asyncio.Future[Any] | None] = []
        keyless: dict[str, int] = {}  # events without a subject, so far, by topic
        for target, (topic, envelope) in zip(targets, batch, strict=True):
            headers, body = envelope.to_binary(self.prefix)
            key = envelope.subject.encode() if envelope.subject else None
            try:
                partition = None
                if key is None:
                    # Round the partitions from the first, in batch order: the batch spreads
                    # over the replicas, and a reader that merges its partitions by time
                    # breaks a tie the way it was published.
                    count = len(await producer.partitions_for(target))
                    partition = keyless.get(target, 0) % count
                    keyless[target] = partition + 1
                sent.append(
                    await producer.send(
                        target,
                        body,
                        key=key,
                        partition=partition,
                        headers=_headers(headers, topic, envelope.subject),
                    )
                )
            except Exception as exc:
                log.warning("publish failed", topic=topic, error=self._explain(exc))
                sent.append(None)
        pending = [f for f in sent if f is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.timeout)
            for future in late:
                future.cancel()
        return [self._acknowledged(f) for f in sent]

    def _acknowledged(self, sent: asyncio.Future[Any] | None) -> bool:
        if sent is None or sent.cancelled():
            return False
        if sent.exception() is not None:
            log.warning("publish not acknowledged", error=self._explain(sent.exception()))
            return False
        return True

    def _explain(self, exc: BaseException | None) -> str:
        text = repr(exc)
        if self.idempotence:
            # A broker without idempotent producers answers InitProducerId with an error the
            # client reports as UnknownError: say what to do about it.
            text += " (if the broker has no idempotent producer, set MERCATO_KAFKA_IDEMPOTENCE=0)"
        return text

    async def publish_raw(self, topic: str, headers: Mapping[str, str], body: bytes) -> None:
        if self._producer is None:
            raise ConnectionError("KafkaBus is not connected: call connect() first")
        target = kafka_topic(self.namespace, topic)
        await self.ensure_topics([target])
        future = await self._producer.send(target, body, headers=_headers(headers, topic, None))
        await within(self.timeout, future)

    async def send(self, consumer: str, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        producer = self._producer
        if producer is None:
            raise ConnectionError("KafkaBus is not connected: call connect() first")
        target = direct_topic(self.namespace, consumer)
        if target not in self._topics:
            existing = await within(self.timeout, self._admin_client().list_topics())
            if target not in existing:
                raise LookupError(f"no topic {target!r}: {consumer} never subscribed")
            self._topics.add(target)
        return await self._produce(producer, [target] * len(batch), batch)

    # -- consuming -------------------------------------------------------------------------
    async def subscribe(
        self,
        consumer: str,
        patterns: Sequence[str],
        processor: Processor,
        *,
        batch_size: int = 100,
        max_deliveries: int = 10,
        batch_wait: float = 0.0,
    ) -> Subscription:
        check_subscription(consumer, patterns, batch_size, max_deliveries, batch_wait)
        topics, regex = subscription_of(self.namespace, patterns, consumer)
        # So the group is assigned their partitions at once, and `send` finds the consumer.
        await self.ensure_topics(topics)
        reader = _Reader(self, consumer, tuple(patterns), processor, batch_size, batch_wait)
        await reader.start(topics, regex)

        async def stop() -> None:
            await reader.stop()
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

        subscription = Subscription(stop=stop, name=consumer, patterns=tuple(patterns))
        self._subscriptions.append(subscription)
        return subscription


def _headers(
    headers: Mapping[str, str], topic: str, subject: str | None
) -> list[tuple[str, bytes]]:
    pairs = [(name, str(value).encode()) for name, value in headers.items()]
    if subject:
        pairs.append((KAFKA_PREFIX + "partitionkey", subject.encode()))
    pairs.append((TOPIC_HEADER, topic.encode()))
    return pairs


@dataclass(slots=True)
class _Held:
    """A partition paused for a retry: at ``due``, read again from ``offset``."""

    offset: int
    due: float


@dataclass(slots=True)
class _Partitions:
    held: dict[TopicPartition, _Held] = field(default_factory=dict)
    # Deliveries so far of the messages that failed, by partition and offset.
    attempts: dict[TopicPartition, dict[int, int]] = field(default_factory=dict)

    def forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self.held.pop(tp, None)
            self.attempts.pop(tp, None)


class _Reader(ConsumerRebalanceListener):  # type: ignore[misc]
    """One group member: reads batches, hands them to the processor, commits, holds retries."""

    def __init__(
        self,
        bus: KafkaBus,
        consumer: str,
        patterns: tuple[str, ...],
        processor: Processor,
        batch_size: int,
        batch_wait: float,
    ):
        self.bus, self.consumer, self.patterns = bus, consumer, patterns
        self.direct = direct_topic(bus.namespace, consumer)
        self.processor, self.batch_size, self.batch_wait = processor, batch_size, batch_wait
        self.partitions = _Partitions()
        self.kafka = AIOKafkaConsumer(
            bootstrap_servers=bus.servers,
            client_id=f"mercato-{consumer}",
            group_id=f"{bus.namespace}.{consumer}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=int(bus.metadata_max_age * 1000),
            heartbeat_interval_ms=1000,
            request_timeout_ms=int(bus.timeout * 1000) + 5000,
        )
        self.in_hand: asyncio.Future[None] | None = None
        self.stopping = False
        self.idle = False
        self.task: asyncio.Task[None] | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Let the batch in hand finish and commit before another member takes its partitions.
        if self.in_hand is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.in_hand)
        self.partitions.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.debug("kafka partitions assigned", consumer=self.consumer, partitions=len(assigned))

    async def start(self, topics: list[str], regex: str | None) -> None:
        try:
            await within(self.bus.timeout, self.kafka.start())
        except Exception as exc:
            with contextlib.suppress(Exception):
                await within(self.bus.timeout, self.kafka.stop())
            raise ConnectionError(f"cannot reach Kafka at {self.bus.url}: {exc!r}") from exc
        # Subscribed after the start, so that the start does not wait for the group to take
        # this member in (seconds: the broker waits for the other members to rejoin); what is
        # published meanwhile waits in its partitions.
        if regex is not None:
            self.kafka.subscribe(pattern=regex, listener=self)
        else:
            self.kafka.subscribe(topics=topics, listener=self)
        self.task = asyncio.create_task(self._run(), name=f"kafka-{self.consumer}")

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.task is not None:
            if self.idle:  # waiting for records: what it fetched is not committed, so redone
                self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await within(self.bus.timeout, self.kafka.stop())  # leaves the group

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            self._release_due(loop.time())
            wait = min([h.due for h in self.partitions.held.values()], default=loop.time() + 1.0)
            try:
                self.idle = True
                try:
                    fetched = await self.kafka.getmany(
                        timeout_ms=max(1, int((wait - loop.time()) * 1000)),
                        max_records=self.batch_size,
                    )
                finally:
                    self.idle = False
            except KafkaError as exc:  # the broker is away or the group is rebalancing
                log.warning("kafka fetch failed", consumer=self.consumer, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            if fetched and self.batch_wait > 0:
                await self._fill(fetched)
            if fetched and not self.stopping:
                self.in_hand = loop.create_future()
                try:
                    await self._handle(fetched)
                finally:
                    self.in_hand.set_result(None)
                    self.in_hand = None

    async def _fill(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """``batch_wait``: fetch what comes within it after a batch's first records."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait
        count = sum(map(len, fetched.values()))
        while count < self.batch_size and not self.stopping:
            left = deadline - loop.time()
            if left <= 0.001:
                return
            try:
                more = await self.kafka.getmany(
                    timeout_ms=max(1, int(left * 1000)), max_records=self.batch_size - count
                )
            except KafkaError:  # what is in hand goes now; the next fetch says what is wrong
                return
            for tp, records in more.items():
                fetched.setdefault(tp, []).extend(records)
                count += len(records)

    def _release_due(self, now: float) -> None:
        for tp, held in list(self.partitions.held.items()):
            if held.due > now:
                continue
            del self.partitions.held[tp]
            try:
                self.kafka.seek(tp, held.offset)
                self.kafka.resume(tp)
            except Exception as exc:  # no longer ours: its new reader starts from the commit
                log.info("retry dropped", consumer=self.consumer, tp=str(tp), error=repr(exc))

    async def _handle(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records: list[tuple[TopicPartition, ConsumerRecord]] = []
        batch: list[RawMessage] = []
        # The partitions merged by publish time (each in its own order): the processor sees
        # the batch about as it was published.
        parts = [
            [(tp, record) for record in fetched[tp]]
            for tp in sorted(fetched, key=lambda tp: (tp.partition, tp.topic))
            if tp not in self.partitions.held  # paused meanwhile: read again from the hold
        ]
        for tp, record in heapq.merge(*parts, key=lambda pair: pair[1].timestamp):
            message = self._message(tp, record)
            if message is not None:
                records.append((tp, record))
                batch.append(message)
        verdicts: Sequence[Verdict] = []
        if batch:
            try:
                verdicts = await self.processor(batch)
                if len(verdicts) != len(batch):
                    raise RuntimeError(f"{len(verdicts)} verdicts for {len(batch)} messages")
            except Exception as exc:  # never expected: the processor catches handler errors
                log.error("processor failed; the batch will be redelivered", error=repr(exc))
                verdicts = [Retry(1.0)] * len(batch)
        # Per partition: commit past the last record, or up to the first one to retry.
        holds = self.partitions.held
        commit = {tp: part[-1].offset + 1 for tp, part in fetched.items() if tp not in holds}
        now = asyncio.get_running_loop().time()
        for (tp, record), message, verdict in zip(records, batch, verdicts, strict=True):
            if verdict is None:
                continue
            held = self.partitions.held.get(tp)
            if held is None or record.offset < held.offset:
                self.partitions.held[tp] = _Held(record.offset, now + verdict.delay)
                commit[tp] = record.offset
            self.partitions.attempts.setdefault(tp, {})[record.offset] = message.attempt
        for tp, held in self.partitions.held.items():
            if tp in commit:
                with contextlib.suppress(Exception):
                    self.kafka.pause(tp)
            tried = self.partitions.attempts.get(tp)
            if tried:  # counts of the messages committed past are no longer needed
                for offset in [o for o in tried if o < held.offset]:
                    del tried[offset]
        for tp in commit:
            if tp not in self.partitions.held:
                self.partitions.attempts.pop(tp, None)
        await self._commit(commit)

    def _message(self, tp: TopicPartition, record: ConsumerRecord) -> RawMessage | None:
        headers = {
            name: value.decode("utf-8", "backslashreplace")
            if isinstance(value, bytes)
            else str(value)
            for name, value in (record.headers or ())
        }
        topic = headers.get(TOPIC_HEADER)
        if (
            topic is not None
            and tp.topic != self.direct  # sent to this consumer alone: past every binding
            and not any(topic_matches(p, topic) for p in self.patterns)
        ):
            return None  # another status of a routed type: not this service's
        attempt = self.partitions.attempts.get(tp, {}).get(record.offset, 0) + 1
        return RawMessage(
            topic=topic or f"unknown.{tp.topic.removeprefix(self.bus.namespace + '.')}",
            headers=headers,
            body=record.value or b"",
            prefix=KAFKA_PREFIX,
            attempt=attempt,
        )

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await within(self.bus.timeout, self.kafka.commit(offsets))
        except Exception as exc:
            # The partitions moved to another member (or the broker is away): it reads them
            # from the last commit, and the inbox skips what was handled here.
            log.info("commit failed; the messages will be read again", error=repr(exc))
