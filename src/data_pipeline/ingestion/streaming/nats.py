"""NATS JetStream for :class:`StreamingSource`: a pull consumer into a bounded frame.

``stream`` is a subject (wildcards allowed) or a list of subjects; the JetStream stream that
stores them is looked up on the server (all subjects must belong to one stream). Two ways to read:

* with ``group``: a durable pull consumer named ``group`` (created on first use, with
  ``start_id`` as its deliver policy). Every source using the same group shares the messages;
  they are acknowledged only after the batch frame is built, so a failure before that returns
  them for redelivery (``ack: false`` returns them too: a repeatable peek).
* without ``group``: an ephemeral consumer that reads in stream order from ``start_id`` (``0``
  the start of the stream, ``$`` only messages published after the first read, a number: after
  that stream sequence) and continues from the last sequence read, kept in ``state_path``
  across processes.

Frame columns: ``_stream`` (the message's subject), ``_id`` (the stream sequence, as text like
every platform's id), ``_sequence`` (the same, Int64), ``_timestamp`` (when the server stored
it, UTC), ``_redelivered``, then the payload columns (see :mod:`._payload`).

nats-py is asyncio; each read runs its own event loop (on a worker thread when the caller
already runs one), so the source stays a plain synchronous call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from data_pipeline.core.deps import import_optional
from data_pipeline.core.errors import (
    ConfigError,
    DataPipelineError,
    IngestionAuthenticationError,
    IngestionConnectionError,
    IngestionError,
    InputNotFoundError,
    UnsupportedOperationError,
)
from data_pipeline.ingestion.streaming._payload import messages_to_frame

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import polars as pl

    from data_pipeline.ingestion.streaming.source import StreamingSource

__all__ = ["read_batch"]

_MIN_WAIT = 0.01
"""nats-py refuses a fetch timeout of 0: ``timeout: 0`` waits this long instead."""


def read_batch(source: StreamingSource) -> pl.DataFrame:
    """At most ``max_messages`` messages, ending when none arrived for ``timeout`` seconds."""
    import_optional("nats", extra="nats", feature="NATS JetStream")
    return _run(_read(source))


def _run(coro: Coroutine[Any, Any, pl.DataFrame]) -> pl.DataFrame:
    """Run ``coro`` in a private event loop (on a thread when this thread already runs one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _address(source: StreamingSource) -> str:
    """``host:port`` of the server, never with credentials."""
    s = source.settings
    if s.url:
        first = s.url.split(",")[0].strip()
        parts = urlsplit(first if "://" in first else f"nats://{first}")
        return f"{parts.hostname}:{parts.port or 4222}"
    return f"{s.host}:{source.port}"


async def _connect(source: StreamingSource) -> Any:
    s = source.settings
    where = _address(source)
    seen: list[BaseException] = []

    async def remember(exc: Exception) -> None:  # nats-py would log every failed attempt
        seen.append(exc)

    servers = [u.strip() for u in s.url.split(",")] if s.url else [f"nats://{s.host}:{source.port}"]
    options: dict[str, Any] = {
        "connect_timeout": 5,
        "allow_reconnect": False,  # fail fast; the caller decides when to try again
        "max_reconnect_attempts": 1,  # (0 would retry forever on the first connect)
        "reconnect_time_wait": 0,
        "error_cb": remember,
    }
    if s.username:
        options["user"] = s.username
    if s.password:
        options["password"] = s.password.get_secret_value()
    options.update({k: v for k, v in s.options.items() if k != "consumer"})
    from nats.aio.client import Client

    nc = Client()
    try:
        await nc.connect(servers=servers, **options)
        return nc
    except Exception as exc:
        await _close_quietly(nc)  # a refused handshake leaves its socket open otherwise
        cause = next((e for e in seen if _is_auth(e)), None) or (seen[-1] if seen else exc)
        if _is_auth(cause) or _is_auth(exc):
            raise IngestionAuthenticationError(
                f"NATS at {where} refused the credentials: {cause}",
                component=source.label,
                hint="check username and password (or the credentials in the url)",
            ) from None
        if isinstance(exc, ValueError | TypeError):  # a bad option passed through
            raise ConfigError(
                f"cannot connect to NATS at {where}: {exc}",
                component=source.label,
                hint="check the url and the keys under 'options' (nats.connect arguments)",
            ) from None
        raise IngestionConnectionError(
            f"cannot connect to NATS at {where}: {cause}",
            component=source.label,
            hint="check host and port, and that nats-server is running",
        ) from None


async def _close_quietly(nc: Any) -> None:
    with contextlib.suppress(Exception):  # closing what never fully opened
        await nc.close()
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        transport.close()


def _is_auth(exc: BaseException) -> bool:
    import nats.errors

    return isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower()


async def _read(source: StreamingSource) -> pl.DataFrame:
    import nats.errors
    import nats.js.errors

    s = source.settings
    subjects = [s.stream] if isinstance(s.stream, str) else list(s.stream)
    nc = await _connect(source)
    try:
        js = nc.jetstream()
        stream_name = await _find_stream(source, js, subjects)
        version = nc.connected_server_version
        if len(subjects) > 1 and (version.major, version.minor) < (2, 10):
            raise UnsupportedOperationError(
                f"reading several subjects {subjects} through one consumer needs "
                f"nats-server 2.10 or later (the server at {_address(source)} is {version})",
                component=source.label,
                hint="use one wildcard subject (orders.>), one source per subject, "
                "or upgrade nats-server",
            )
        details = source.current_operation.details
        details["jetstream_stream"] = stream_name
        if s.group:
            return await _read_group(source, nc, js, stream_name, subjects)
        return await _read_ordered(source, nc, js, stream_name, subjects)
    except DataPipelineError:
        raise
    except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
        raise IngestionError(
            f"JetStream is not available on the NATS server at {_address(source)}: {exc}",
            component=source.label,
            hint="enable JetStream on the server (nats-server -js, or jetstream {} in its config)",
        ) from None
    except (nats.errors.ConnectionClosedError, nats.errors.UnexpectedEOF, OSError) as exc:
        raise IngestionConnectionError(
            f"lost the connection to NATS at {_address(source)}: {exc}",
            component=source.label,
            hint="check that nats-server is running, then read again",
        ) from None
    finally:
        await nc.close()


async def _find_stream(source: StreamingSource, js: Any, subjects: list[str]) -> str:
    import nats.js.errors

    names: dict[str, str] = {}
    for subject in subjects:
        try:
            names[subject] = await js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            raise InputNotFoundError(
                f"no JetStream stream stores subject {subject!r} on the NATS server at "
                f"{_address(source)}",
                component=source.label,
                hint=f"create a stream for it first, e.g. `nats stream add EVENTS --subjects "
                f"'{subject}'` (or js.add_stream(name=..., subjects=[...]))",
            ) from None
    if len(set(names.values())) > 1:
        raise ConfigError(
            f"the subjects belong to different JetStream streams: {names}",
            component=source.label,
            hint="read each JetStream stream with its own source",
        )
    return next(iter(names.values()))


def _filter(config: Any, subjects: list[str]) -> None:
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = list(subjects)


def _start_sequence(source: StreamingSource) -> int | None:
    """``start_id`` as "read after this stream sequence" (None for ``$``)."""
    start = source.settings.start_id.strip()
    if start == "$":
        return None
    if start.isdigit():
        return int(start)
    raise ConfigError(
        f"start_id {start!r} is not a NATS stream position",
        component=source.label,
        hint="use '0' (the start of the stream), '$' (only new messages) or a stream sequence",
    )


async def _read_group(
    source: StreamingSource, nc: Any, js: Any, stream_name: str, subjects: list[str]
) -> pl.DataFrame:
    """A durable pull consumer named ``group``: shared, acknowledged after the frame is built."""
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    s = source.settings
    durable = str(s.group)
    try:
        info = await js.consumer_info(stream_name, durable)
    except nats.js.errors.NotFoundError:
        info = None
    if info is None:
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=max(1000, s.max_messages),
        )
        after = _start_sequence(source)
        if after is None:
            config.deliver_policy = DeliverPolicy.NEW
        elif after > 0:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = after + 1
        _filter(config, subjects)
        try:
            config = config.evolve(**dict(s.options.get("consumer", {})))
            await js.add_consumer(stream_name, config=config)
        except (TypeError, nats.js.errors.BadRequestError) as exc:
            reason = getattr(exc, "description", None) or str(exc)
            raise ConfigError(
                f"cannot create the JetStream consumer {durable!r} on stream {stream_name!r}: "
                f"{reason}",
                component=source.label,
                hint="check the settings under options.consumer (nats.js.api.ConsumerConfig "
                "fields such as ack_wait, max_deliver, max_ack_pending)",
            ) from None
    else:
        have = info.config.filter_subjects or (
            [info.config.filter_subject] if info.config.filter_subject else []
        )
        if sorted(have) != sorted(subjects):
            raise ConfigError(
                f"the JetStream consumer {durable!r} on stream {stream_name!r} reads "
                f"{have or 'every subject'}, not {subjects}",
                component=source.label,
                hint="use another group name, or delete that consumer "
                f"(`nats consumer rm {stream_name} {durable}`)",
            )
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream_name)
    messages: list[Any] = []
    # Unsubscribe before acknowledging: a pull request of ours still pending at the server
    # (the last fetch gave up waiting) loses its interest with the subscription, so a message
    # returned with nak is redelivered to the next reader, not into this closed inbox (where
    # it would wait for ack_wait) or into this batch twice.
    try:
        messages = await _fetch(sub, s.max_messages, s.timeout)
        frame = _frame(source, _first_deliveries(messages))
    except BaseException:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        await _nak_all(nc, messages)  # back to the consumer for redelivery, now
        raise
    await sub.unsubscribe()
    for msg in messages:
        await (msg.ack() if s.ack else msg.nak())
    await nc.flush()  # the acks have reached the server before the batch is returned
    source.current_operation.details["consumer"] = durable
    return frame


def _first_deliveries(messages: list[Any]) -> list[Any]:
    """One message per stream sequence: a message redelivered within the same batch (its
    ack_wait ran out while the batch was still filling) is not a second row."""
    seen: set[int] = set()
    unique = []
    for msg in messages:
        sequence = msg.metadata.sequence.stream
        if sequence not in seen:
            seen.add(sequence)
            unique.append(msg)
    return unique


async def _nak_all(nc: Any, messages: list[Any]) -> None:
    try:
        for msg in messages:
            await msg.nak()
        await nc.flush()
    except Exception:  # the connection is gone: the server redelivers after ack_wait anyway
        pass


async def _read_ordered(
    source: StreamingSource, nc: Any, js: Any, stream_name: str, subjects: list[str]
) -> pl.DataFrame:
    """An ephemeral consumer from the last stream sequence read (no acknowledgements)."""
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    s = source.settings
    key = ",".join(subjects)
    positions = source.positions()
    position = positions.get(key)
    after = int(position) if position is not None else _start_sequence(source)
    if after is None:  # '$': new messages are those after the last one stored now
        info = await js.stream_info(stream_name)
        after = int(info.state.last_seq)
        positions[key] = str(after)
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1,
        inactive_threshold=max(60.0, 10 * s.timeout),  # the server drops it if we vanish
        mem_storage=True,
        num_replicas=1,
    )
    _filter(config, subjects)
    config.name = nc._nuid.next().decode()
    await js.add_consumer(stream_name, config=config)
    try:
        sub = await js.pull_subscribe_bind(consumer=config.name, stream=stream_name)
        messages = await _fetch(sub, s.max_messages, s.timeout)
        frame = _frame(source, messages)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(nats.js.errors.Error):  # else inactive_threshold removes it
            await js.delete_consumer(stream_name, config.name)
    if messages:
        positions[key] = str(messages[-1].metadata.sequence.stream)
    source.save_positions()
    source.current_operation.details["position"] = positions.get(key)
    return frame


async def _fetch(sub: Any, limit: int, timeout: float) -> list[Any]:
    """Pull until ``limit`` messages or until a pull waited ``timeout`` seconds for nothing."""
    messages: list[Any] = []
    wait = max(timeout, _MIN_WAIT)
    while len(messages) < limit:
        try:
            got = await sub.fetch(limit - len(messages), timeout=wait)
        except TimeoutError:  # nats.errors.TimeoutError and asyncio's are TimeoutErrors
            break
        if not got:
            break
        messages.extend(got)
    return messages


def _frame(source: StreamingSource, messages: list[Any]) -> pl.DataFrame:
    import polars as pl

    meta: dict[str, list[Any]] = {
        "_stream": [],
        "_id": [],
        "_sequence": [],
        "_timestamp": [],
        "_redelivered": [],
    }
    for msg in messages:
        md = msg.metadata
        meta["_stream"].append(msg.subject)
        meta["_id"].append(str(md.sequence.stream))
        meta["_sequence"].append(md.sequence.stream)
        meta["_timestamp"].append(md.timestamp)
        meta["_redelivered"].append(md.num_delivered > 1)
    source.current_operation.details["messages"] = len(messages)
    types = {
        "_sequence": pl.Int64,
        "_timestamp": pl.Datetime("us", "UTC"),
        "_redelivered": pl.Boolean,
    }
    return messages_to_frame(source, meta, [msg.data for msg in messages], types)
