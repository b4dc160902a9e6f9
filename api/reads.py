"""Read-only queries of hot endpoints, answered off the event loop in batches.

GET /v1/jobs/{id} is one short Core query. Sent through Starlette's threadpool, each request woke a worker thread and
then the event loop, and the two fought over the GIL: on the status benchmark that hop alone cost about a quarter of the
request's server CPU. The threadpool's 40 threads also ran more reads at once than the connection pool keeps (5 on
SQLite), so connections were opened and closed per request. Here the reads that arrive in one turn of the event loop go
to one thread in one hop and share one pooled connection: under load, one wake-up and one checkout for many requests.

A batch shares a connection, not a snapshot older than any of its requests: it starts after they all arrived (and on
Postgres each statement sees the latest commits anyway). A failed read is rolled back so that it cannot fail the
reads after it. One thread: the GIL lets one run at a time anyway, and a read takes well under a millisecond.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine

P = ParamSpec("P")
T = TypeVar("T")
_Read = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, Exception | None]


class Reads:
    """`await reads.run(query, *args)` calls `query(connection, *args)` on the read thread and returns its result."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._executor: ThreadPoolExecutor | None = None  # started by the first read, so a shut-down app can restart
        self._batch: list[_Read] = []

    async def run(self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._batch.append((lambda connection: query(connection, *args, **kwargs), future))
        if len(self._batch) == 1:  # the first read of this turn sends the batch once the turn's other tasks ran
            loop.call_soon(self._send, loop)
        return await future

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._batch = self._batch, []
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-reads")
        self._executor.submit(self._answer, batch, loop)

    def _answer(self, batch: list[_Read], loop: asyncio.AbstractEventLoop) -> None:
        outcomes: list[_Outcome] = []
        try:
            with self._engine.connect() as connection:
                for read, future in batch:
                    outcomes.append(_outcome(connection, read, future))
        except Exception as exc:
            outcomes += [(future, None, exc) for _, future in batch[len(outcomes) :]]
        loop.call_soon_threadsafe(_settle, outcomes)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _outcome(connection: Connection, read: Callable[[Connection], Any], future: asyncio.Future[Any]) -> _Outcome:
    try:
        return future, read(connection), None
    except Exception as exc:
        connection.rollback()  # a failed statement (Postgres) would fail the reads after it
        return future, None, exc


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():  # the request went away (client disconnect, shutdown)
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
