"""NATS JetStream for :class:`StreamingSource`: a pull consumer into a bounded frame.

``stream`` is a subject (wildcards allowed) or a list of subjects; the JetStream stream that
stores them is looked up on the server (all subjects must belong to one stream). The source keeps
one connection (and one pull subscription) for its lifetime, on an event loop of its own
running on a thread, so the source stays a plain synchronous call. Two ways to read:

* with ``group``: a durable pull consumer named ``group`` (created on first use with
  ``start_id`` as its deliver policy, ``max_ack_pending`` twice ``max_messages`` (at least
  1000) and ``ack_wait`` 10 s unless ``options.consumer`` says otherwise). Every source using the same
  group shares the messages. A batch is acknowledged only after its checkpoint committed (read
  on its own: when the next batch is asked for); until then the reader tells the server every
  ``ack_wait``/3 that the batch is in progress, so a slow batch is never delivered again
  while this process lives, and a dead process's batch comes back after ``ack_wait``. The
  acknowledgements are confirmed by the server before the next batch is read. A message
  delivered again after its batch committed is acknowledged and dropped: the checkpoint keeps
  the stream sequence of every committed message whose acknowledgement the server has not
  confirmed (a process killed between a commit and its acknowledgement leaves its batch to
  come back ``ack_wait`` later, possibly after several more commits and restarts); a
  sequence leaves it once the server confirmed its acknowledgement or the consumer's ack
  floor passed it. ``ack: false`` returns every batch (a repeatable peek).
* without ``group``: an ephemeral consumer that reads in stream order from ``start_id`` (``0``
  the start of the stream, ``$`` only messages published after the first read, a number: after
  that stream sequence) and continues from the last sequence read, kept in the checkpoint (or
  ``state_path``) across processes.

Frame columns: ``_stream`` (the message's subject), ``_id`` (the stream sequence, as text like
every platform's id), ``_sequence`` (the same, Int64), ``_timestamp`` (when the server stored
it, UTC), ``_redelivered``, then the payload columns (see :mod:`._payload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
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

__all__ = ["Reader"]

_MIN_WAIT = 0.01
"""nats-py refuses a fetch timeout of 0: ``timeout: 0`` waits this long instead."""
_ACK_WAIT = 10.0
"""``ack_wait`` of a durable consumer the source creates (seconds): a dead process's batch is
delivered again after this long; a live one's is kept in progress."""


class Reader:
    """One NATS connection for the source's lifetime; see the module docstring."""

    def __init__(self, source: StreamingSource) -> None:
        import_optional("nats", extra="nats", feature="NATS JetStream")
        self.source = source
        s = source.settings
        self.subjects = [s.stream] if isinstance(s.stream, str) else list(s.stream)
        self.key = ",".join(self.subjects)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name=f"nats-{source.name}", daemon=True
        )
        self.thread.start()
        self.nc: Any = None
        self.js: Any = None
        self.stream_name = ""
        self.sub: Any = None
        self.consumer_name: str | None = None
        self.ack_wait = _ACK_WAIT
        self.position: int | None = None  # without a group: the last sequence read
        self.pending: list[Any] = []  # with a group: read, not acknowledged
        self.pending_sequences: list[int] = []  # their stream sequences
        self.filling: list[Any] = []  # with a group: the batch being fetched
        self.committed: set[int] = set()  # committed, acknowledgement not confirmed
        self.dropped: set[int] = set()  # copies of those acknowledged, not confirmed yet
        self.acked: deque[set[int]] = deque(maxlen=3)  # recently acknowledged here
        self.keeper: Any = None

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    # -- the Reader protocol -------------------------------------------------------------------

    def restore(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        if self.source.settings.group:
            self.committed = {int(x) for x in state.get("pending") or []}
            self.dropped = set()
            if self.pending:  # read here, not committed: back to the consumer at once
                self._call(self._give_back(self.pending))
                self.pending, self.pending_sequences = [], []
        else:
            saved = (state.get("positions") or {}).get(self.key)
            self.position = int(saved) if saved is not None else None
            if self.sub is not None:
                self._call(self._drop_ordered())

    def checkpoint_state(self) -> dict[str, Any]:
        if self.source.settings.group:
            # everything committed that the server may still deliver again
            return {"pending": sorted(self.committed.union(self.pending_sequences))}
        return {"positions": {} if self.position is None else {self.key: str(self.position)}}

    def acknowledge(self) -> None:
        if not self.pending:
            return
        messages, self.pending = self.pending, []
        sequences, self.pending_sequences = self.pending_sequences, []
        if self.source.settings.ack:
            self.committed.update(sequences)  # until the server confirms the acknowledgement
            earlier = bool(self.committed.difference(sequences, self.dropped))
            floor = self._call(self._ack(messages, floor=earlier))
            self.acked.append(set(sequences))
            self.committed.difference_update(sequences, self.dropped)
            self.dropped.clear()
            if floor is not None:
                self.committed = {x for x in self.committed if x > floor}
        else:
            self._call(self._nak(messages))

    def close(self) -> None:
        try:
            if self.nc is not None:
                self._call(self._shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def lag(self) -> dict[str, int] | None:
        if self.nc is None:
            return None
        return {self.key: int(self._call(self._lag()))}

    def read(self) -> pl.DataFrame:
        """At most ``max_messages`` messages, ending when none arrived for ``timeout`` s."""
        messages, fields = self._call(self._read())
        try:
            frame = _frame(self.source, messages, fields)
        except BaseException:
            if self.source.settings.group:  # back to the consumer for redelivery, now
                self._call(self._give_back(messages))
            raise
        if self.source.settings.group:
            self.pending.extend(messages)
            self.pending_sequences.extend(fields["_sequence"].to_list())
            self.source.current_operation.details["consumer"] = self.consumer_name
        else:
            if messages:
                self.position = int(fields["_sequence"][-1])
            self.source.current_operation.details["position"] = self.position
        return frame

    # -- on the event loop ---------------------------------------------------------------------

    async def _open(self) -> None:
        if self.nc is not None:
            return
        source = self.source
        nc = await _connect(source)
        try:
            js = nc.jetstream()
            self.stream_name = await _find_stream(source, js, self.subjects)
            version = nc.connected_server_version
            if len(self.subjects) > 1 and (version.major, version.minor) < (2, 10):
                raise UnsupportedOperationError(
                    f"reading several subjects {self.subjects} through one consumer needs "
                    f"nats-server 2.10 or later (the server at {_address(source)} is {version})",
                    component=source.label,
                    hint="use one wildcard subject (orders.>), one source per subject, "
                    "or upgrade nats-server",
                )
        except BaseException:
            await nc.close()
            raise
        self.nc, self.js = nc, js
        source.current_operation.details["jetstream_stream"] = self.stream_name

    async def _read(self) -> tuple[list[Any], pl.DataFrame]:
        import nats.errors
        import nats.js.errors

        source = self.source
        try:
            await self._open()
            s = source.settings
            if s.group:
                if self.sub is None:
                    await self._bind_group()
                if self.keeper is None:
                    self.keeper = asyncio.ensure_future(self._keep_in_progress())
                while True:  # a read of nothing but dropped copies reads on
                    self.filling = []
                    try:
                        fetched = await _fetch(self.sub, s.max_messages, s.timeout, self.filling)
                    finally:
                        self.filling = []
                    messages, fields = await self._new_only(fetched)
                    if messages or not fetched:
                        return messages, fields
            if self.sub is None:
                await self._bind_ordered()
            messages = await _fetch(self.sub, s.max_messages, s.timeout)
            return messages, _reply_fields(messages)
        except DataPipelineError:
            raise
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
            raise IngestionError(
                f"JetStream is not available on the NATS server at {_address(source)}: {exc}",
                component=source.label,
                hint="enable JetStream on the server (nats-server -js, or jetstream {} in its "
                "config)",
            ) from None
        except (nats.errors.ConnectionClosedError, nats.errors.UnexpectedEOF, OSError) as exc:
            raise IngestionConnectionError(
                f"lost the connection to NATS at {_address(source)}: {exc}",
                component=source.label,
                hint="check that nats-server is running, then read again",
            ) from None

    async def _new_only(self, messages: list[Any]) -> tuple[list[Any], pl.DataFrame]:
        """One message per stream sequence, without those committed or acknowledged before
        (delivered again: acknowledged again, dropped); and their reply fields."""
        import numpy as np
        import polars as pl

        fields = _reply_fields(messages)
        if not messages:
            return messages, fields
        sequence = fields["_sequence"]
        numbers = sequence.to_numpy()
        done = np.fromiter(self.committed.union(*self.acked), dtype=np.int64)
        again = np.isin(numbers, done)
        held = np.isin(numbers, np.asarray(self.pending_sequences, dtype=np.int64))
        keep = ~again & ~held & sequence.is_first_distinct().to_numpy()
        # (a copy delivered twice within the batch, or while held: one row)
        if again.any():
            for index in np.flatnonzero(again):
                await messages[index].ack()
            self.dropped.update(int(x) for x in numbers[again])
            details = self.source.current_operation.details
            details["duplicates_dropped"] = details.get("duplicates_dropped", 0) + int(again.sum())
        if keep.all():
            return messages, fields
        indices = np.flatnonzero(keep)
        return [messages[i] for i in indices], fields.filter(pl.Series(keep))

    async def _bind_group(self) -> None:
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        source = self.source
        s = source.settings
        durable = str(s.group)
        js = self.js
        try:
            info = await js.consumer_info(self.stream_name, durable)
        except nats.js.errors.NotFoundError:
            info = None
        if info is None:
            config = ConsumerConfig(
                name=durable,
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=_ACK_WAIT,
                max_ack_pending=max(1000, 2 * s.max_messages),
            )
            after = _start_sequence(source)
            if after is None:
                config.deliver_policy = DeliverPolicy.NEW
            elif after > 0:
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = after + 1
            _filter(config, self.subjects)
            try:
                config = config.evolve(**dict(s.options.get("consumer", {})))
                info = await js.add_consumer(self.stream_name, config=config)
            except (TypeError, nats.js.errors.BadRequestError) as exc:
                reason = getattr(exc, "description", None) or str(exc)
                raise ConfigError(
                    f"cannot create the JetStream consumer {durable!r} on stream "
                    f"{self.stream_name!r}: {reason}",
                    component=source.label,
                    hint="check the settings under options.consumer (nats.js.api.ConsumerConfig "
                    "fields such as ack_wait, max_deliver, max_ack_pending)",
                ) from None
        else:
            have = info.config.filter_subjects or (
                [info.config.filter_subject] if info.config.filter_subject else []
            )
            if sorted(have) != sorted(self.subjects):
                raise ConfigError(
                    f"the JetStream consumer {durable!r} on stream {self.stream_name!r} reads "
                    f"{have or 'every subject'}, not {self.subjects}",
                    component=source.label,
                    hint="use another group name, or delete that consumer "
                    f"(`nats consumer rm {self.stream_name} {durable}`)",
                )
        self.ack_wait = float(info.config.ack_wait or _ACK_WAIT)
        self.sub = await js.pull_subscribe_bind(durable=durable, stream=self.stream_name)
        self.consumer_name = durable

    async def _bind_ordered(self) -> None:
        """An ephemeral consumer from the position (no acknowledgements)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        s = self.source.settings
        after = self.position if self.position is not None else _start_sequence(self.source)
        if after is None:  # '$': new messages are those after the last one stored now
            info = await self.js.stream_info(self.stream_name)
            after = int(info.state.last_seq)
            self.position = after
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            inactive_threshold=max(60.0, 10 * s.timeout),  # the server drops it if we vanish
            mem_storage=True,
            num_replicas=1,
        )
        _filter(config, self.subjects)
        config.name = self.nc._nuid.next().decode()
        await self.js.add_consumer(self.stream_name, config=config)
        self.consumer_name = config.name
        self.sub = await self.js.pull_subscribe_bind(consumer=config.name, stream=self.stream_name)

    async def _drop_ordered(self) -> None:
        import nats.js.errors

        sub, name, self.sub = self.sub, self.consumer_name, None
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(nats.js.errors.Error):  # else inactive_threshold removes it
            await self.js.delete_consumer(self.stream_name, name)

    async def _keep_in_progress(self) -> None:
        """While a batch is fetched or held (read, not acknowledged): tell the server every
        ack_wait/3 that it is in progress, so it is not delivered again while this process
        lives (a batch may take longer to fill, process and commit than ack_wait)."""
        while True:
            await asyncio.sleep(max(self.ack_wait / 3, 0.05))
            for msg in [*self.pending, *self.filling]:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _ack(self, messages: list[Any], *, floor: bool = False) -> int | None:
        """Acknowledge ``messages``, confirmed by the server. ``floor`` (committed sequences of
        earlier batches are unconfirmed): return the consumer's ack floor (every stream
        sequence up to it is acknowledged), else None."""
        *rest, last = messages
        for msg in rest:
            await msg.ack()
        # the server's answer to the last one comes after it processed all before it (the
        # copies acknowledged and dropped by earlier reads too)
        try:
            await last.ack_sync(timeout=max(5.0, self.ack_wait))
        except Exception:
            await self.nc.flush()
            raise
        return await self._ack_floor() if floor else None

    async def _ack_floor(self) -> int | None:
        info = await self.js.consumer_info(self.stream_name, self.consumer_name)
        floor = getattr(info.ack_floor, "stream_seq", None) if info.ack_floor else None
        return None if floor is None else int(floor)

    async def _give_back(self, messages: list[Any]) -> None:
        """Unsubscribe first: a pull request of ours still pending at the server loses its
        interest with the subscription, so what is returned with nak goes to the next reader
        (ours or another's), not into this inbox to wait for ack_wait. The next read binds
        again."""
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self._nak(messages)

    async def _nak(self, messages: list[Any]) -> None:
        with contextlib.suppress(Exception):  # the connection is gone: ack_wait returns them
            for msg in messages:
                await msg.nak()
            await self.nc.flush()

    async def _lag(self) -> int:
        if self.source.settings.group and self.consumer_name:
            info = await self.js.consumer_info(self.stream_name, self.consumer_name)
            return int(info.num_pending)
        info = await self.js.stream_info(self.stream_name)
        return max(0, int(info.state.last_seq) - int(self.position or 0))

    async def _shutdown(self) -> None:
        if self.keeper is not None:
            self.keeper.cancel()
            with contextlib.suppress(BaseException):
                await self.keeper
        if self.source.settings.group:
            # closed before the commit: back to the consumer at once
            await self._give_back(self.pending)
            self.pending, self.pending_sequences = [], []
        elif self.sub is not None:
            await self._drop_ordered()
        await self.nc.close()
        self.nc = None


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


async def _fetch(sub: Any, limit: int, timeout: float, into: list[Any] | None = None) -> list[Any]:
    """Pull until ``limit`` messages or until a pull waited ``timeout`` seconds for nothing.
    ``into``: a list the messages are added to as they arrive (kept in progress meanwhile)."""
    messages: list[Any] = [] if into is None else into
    wait = max(timeout, _MIN_WAIT)
    while len(messages) < limit:
        try:
            got = await sub.fetch(limit - len(messages), timeout=wait)
        except TimeoutError:  # nats.errors.TimeoutError and asyncio's are TimeoutErrors
            break
        if not got:
            break
        messages.extend(got)
    return list(messages)


def _reply_fields(messages: list[Any]) -> pl.DataFrame:
    """Stream sequence, delivery count and server timestamp of each message, parsed from the
    acknowledgement subjects in one vectorised pass (``$JS.ACK.<stream>.<consumer>.<delivered>.
    <stream seq>.<consumer seq>.<nanos>.<pending>``, or the v2 form with domain and account
    hash in front), not message by message."""
    import polars as pl

    replies = pl.Series("reply", [m.reply for m in messages], dtype=pl.String)
    tokens = replies.str.split(".")
    v1 = tokens.list.len() == 9

    def field(one: int, two: int) -> pl.Expr:
        return (
            pl.when(pl.col("v1"))
            .then(pl.col("t").list.get(one, null_on_oob=True))
            .otherwise(pl.col("t").list.get(two, null_on_oob=True))
            .cast(pl.Int64)
        )

    return pl.DataFrame({"t": tokens, "v1": v1}).select(
        field(5, 7).alias("_sequence"),
        field(4, 6).alias("delivered"),
        field(7, 9).alias("nanos"),
    )


def _frame(source: StreamingSource, messages: list[Any], fields: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    meta: dict[str, Any] = {
        "_stream": pl.Series("_stream", [m.subject for m in messages], dtype=pl.String),
        "_id": fields["_sequence"].cast(pl.String),
        "_sequence": fields["_sequence"],
        "_timestamp": pl.from_epoch(fields["nanos"], time_unit="ns")
        .dt.cast_time_unit("us")
        .dt.replace_time_zone("UTC"),
        "_redelivered": fields["delivered"] > 1,
    }
    source.current_operation.details["messages"] = len(messages)
    types = {
        "_sequence": pl.Int64,
        "_timestamp": pl.Datetime("us", "UTC"),
        "_redelivered": pl.Boolean,
    }
    return messages_to_frame(source, meta, [msg.data for msg in messages], types)
