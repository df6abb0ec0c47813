"""The raw limits Mercato runs up against, measured with the same Python clients it uses:

- the broker: persistent messages published with confirms (pipelined) and consumed with
  manual acks, into one queue and fanned out to three (RabbitMQ quorum queues via aio-pika, as
  Mercato declares them; NATS JetStream file streams via nats-py; Kafka topics via aiokafka,
  acks=all, a consumer group per queue committing after each batch);
- the database: a handler-shaped transaction (inbox insert + conditional update + outbox
  insert) on PostgreSQL via asyncpg with a few connections, or on SQLite (WAL, one writer,
  ``synchronous=NORMAL`` as Mercato sets it);
- HTTP: a bare uvicorn endpoint (``hello``) in a process of its own, hammered like the gateway.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import aiosqlite
import asyncpg  # type: ignore[import-untyped]
import nats
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.js.api import ConsumerConfig, StorageType, StreamConfig

from mercato.bench.client import FAILURES, Client
from mercato.bench.hammer import Hammered, hammer
from mercato.bench.system import POSTGRES, free_port
from mercato.platform.bus.kafka import bootstrap_servers
from mercato.platform.settings import broker_urls
from mercato.platform.waits import within

BODY = json.dumps({"specversion": "1.0", "type": "OrderCreated", "data": {"x": "y" * 400}}).encode()
WINDOW = 200  # publishes awaiting their confirm at once


async def _pipelined(count: int, publish: Callable[[int], Awaitable[object]]) -> None:
    gate = asyncio.Semaphore(WINDOW)

    async def one(i: int) -> None:
        async with gate:
            await publish(i)

    await asyncio.gather(*(one(i) for i in range(count)))


async def rabbitmq(url: str, messages: int, queues: int) -> float:
    """Messages/s published (persistent, confirmed) and consumed by every one of ``queues``."""
    name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    publisher = await aio_pika.connect(url)
    consumer = await aio_pika.connect(url)
    consumed = 0
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal consumed
        await message.ack()
        consumed += 1
        if consumed >= messages * queues:
            done.set()

    try:
        channel = await publisher.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
        declared = []
        for q in range(queues):
            ch = await consumer.channel()
            await ch.set_qos(prefetch_count=WINDOW)
            queue = await ch.declare_queue(
                f"{name}.{q}", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await queue.bind(exchange)
            await queue.consume(on_message)
            declared.append(queue)
        started = time.perf_counter()
        await _pipelined(
            messages,
            lambda i: exchange.publish(
                aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="raw",
            ),
        )
        await within(120, done.wait())
        elapsed = time.perf_counter() - started
        await consumer.close()  # before the queues go, or the broker cancels its consumers
        for queue in declared:
            await channel.queue_delete(queue.name)
        await exchange.delete()
    finally:
        await consumer.close()
        await publisher.close()
    return messages / elapsed


async def nats_jetstream(url: str, messages: int, queues: int) -> float:
    """The same on JetStream: a file stream, ``queues`` durable pull consumers, explicit acks."""
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"BENCH_RAW_{tag}", f"benchraw{tag}.events"
    nc = await nats.connect(url)
    js = nc.jetstream()
    consumed = 0
    try:
        await js.add_stream(StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE))
        subs = [
            await js.pull_subscribe(
                subject, durable=f"c{q}", stream=stream, config=ConsumerConfig(max_ack_pending=-1)
            )
            for q in range(queues)
        ]

        async def consume(sub: object) -> None:
            nonlocal consumed
            taken = 0
            while taken < messages:
                try:
                    batch = await sub.fetch(WINDOW, timeout=1)  # type: ignore[attr-defined]
                except nats.errors.TimeoutError:
                    continue
                for msg in batch:
                    await msg.ack()
                taken += len(batch)
                consumed += len(batch)

        started = time.perf_counter()
        consumers = [asyncio.create_task(consume(s)) for s in subs]
        await _pipelined(messages, lambda i: js.publish(subject, BODY))
        await within(120, asyncio.gather(*consumers))
        elapsed = time.perf_counter() - started
    finally:
        try:
            await js.delete_stream(stream)
        finally:
            await nc.close()
    return messages / elapsed


async def kafka(url: str, messages: int, queues: int) -> float:
    """The same on Kafka: a topic of three partitions (as Mercato creates them), acks=all,
    ``queues`` consumer groups reading it, each committing after every batch."""
    servers = bootstrap_servers(broker_urls(url))
    topic = f"benchraw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    consumers: list[AIOKafkaConsumer] = []
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False)
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
        for q in range(queues):
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=servers,
                group_id=f"{topic}.{q}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()  # returns once the group has assigned its partitions
            consumers.append(consumer)
        await producer.start()

        async def consume(consumer: AIOKafkaConsumer) -> None:
            taken = 0
            while taken < messages:
                batch = await consumer.getmany(timeout_ms=1000, max_records=WINDOW)
                if batch:
                    await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
                taken += sum(len(rs) for rs in batch.values())

        started = time.perf_counter()
        reading = [asyncio.create_task(consume(c)) for c in consumers]
        sent = [await producer.send(topic, BODY) for _ in range(messages)]
        await within(120, asyncio.gather(*sent))
        await within(120, asyncio.gather(*reading))
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        for consumer in consumers:
            await consumer.stop()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    return messages / elapsed


async def _transactions(
    seconds: float, workers: int, transaction: Callable[[int, int], Awaitable[None]]
) -> float:
    count = 0
    stop_at = time.perf_counter() + seconds

    async def work(w: int) -> None:
        nonlocal count
        i = 0
        while time.perf_counter() < stop_at:
            await transaction(w, i)
            count += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(work(w) for w in range(workers)))
    return count / (time.perf_counter() - started)


SCHEMA = [
    "CREATE TABLE inbox (consumer TEXT, event_id TEXT, handled_at TEXT, "
    "PRIMARY KEY (consumer, event_id))",
    "CREATE TABLE stock (product_id TEXT PRIMARY KEY, available INTEGER NOT NULL)",
    "CREATE TABLE outbox (seq {serial} PRIMARY KEY, event_id TEXT NOT NULL, type TEXT, body TEXT)",
]
PRODUCTS = 100


async def postgres(seconds: float, connections: int, run_id: str) -> float:
    """Handler-shaped transactions/s on PostgreSQL (asyncpg, ``connections`` at once)."""
    database = f"bench_{run_id}_raw"
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        pool = await asyncpg.create_pool(
            f"{POSTGRES}/{database}", min_size=connections, max_size=connections
        )
        try:
            async with pool.acquire() as conn:
                for statement in SCHEMA:
                    await conn.execute(statement.format(serial="BIGSERIAL"))
                await conn.executemany(
                    "INSERT INTO stock VALUES ($1, $2)",
                    [(f"p{i}", 10**9) for i in range(PRODUCTS)],
                )

            async def transaction(w: int, i: int) -> None:
                event_id = f"{w}-{i}"
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "INSERT INTO inbox VALUES ('raw', $1, now()::text)", event_id
                    )
                    await conn.execute(
                        "UPDATE stock SET available = available - 1 "
                        "WHERE product_id = $1 AND available >= 1",
                        f"p{i % PRODUCTS}",
                    )
                    await conn.execute(
                        "INSERT INTO outbox (event_id, type, body) VALUES ($1, 'X', $2)",
                        event_id,
                        BODY.decode(),
                    )

            return await _transactions(seconds, connections, transaction)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def sqlite(seconds: float, directory: Path) -> float:
    """The same transaction on SQLite: one connection (one writer), WAL, synchronous=NORMAL."""
    path = directory / f"raw-{uuid.uuid4().hex[:8]}.db"
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            await db.execute(f"PRAGMA {pragma}")
        for statement in SCHEMA:
            await db.execute(statement.format(serial="INTEGER"))
        await db.executemany(
            "INSERT INTO stock VALUES (?, ?)", [(f"p{i}", 10**9) for i in range(PRODUCTS)]
        )

        async def transaction(w: int, i: int) -> None:
            event_id = f"{w}-{i}"
            await db.execute("BEGIN")
            await db.execute("INSERT INTO inbox VALUES ('raw', ?, datetime('now'))", (event_id,))
            await db.execute(
                "UPDATE stock SET available = available - 1 "
                "WHERE product_id = ? AND available >= 1",
                (f"p{i % PRODUCTS}",),
            )
            await db.execute(
                "INSERT INTO outbox (event_id, type, body) VALUES (?, 'X', ?)",
                (event_id, BODY.decode()),
            )
            await db.execute("COMMIT")

        rate = await _transactions(seconds, 1, transaction)
    await asyncio.to_thread(_remove, path)
    return rate


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@asynccontextmanager
async def hello_server() -> AsyncIterator[str]:
    """The bare uvicorn endpoint in a process of its own, answering; its base URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mercato.bench.hello",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with Client(base, timeout=1) as http:
            for _ in range(100):
                try:
                    await http.get("/")
                    break
                except FAILURES:
                    await asyncio.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            await within(10, process.wait())
        except TimeoutError:
            process.kill()
            await process.wait()


async def bare_http(seconds: float, clients: int) -> Hammered:
    """Requests/s of the bare uvicorn endpoint, in a process of its own."""
    async with hello_server() as base:
        return await hammer(base, lambda i: "/", seconds, clients, label="GET hello")
