"""Micro-batching: rows from concurrent requests answered by one model call.

A model call costs about the same for one row as for dozens (AutoGluon's per-call
overhead dominates), so rows that arrive together are stacked into one matrix. One
worker task takes rows from the queue: when the first row arrives it yields to the
event loop so that requests already being parsed can add theirs, and stops gathering
as soon as a loop pass brings nothing new, the batch is full, or ``max_wait_s`` has
passed since the first row. A lone request therefore pays a few loop passes, never the
whole wait. While a batch is being predicted new rows queue up and form the next one,
so batches grow with the load.

The model call runs inline on the event loop or in one dedicated worker thread
(``in_thread``); see docs/benchmarks.md for which is better here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

PredictMatrix = Callable[[np.ndarray], np.ndarray]

# Loop passes without a new row before a batch is closed: a request's rows reach the
# queue a few passes after its bytes arrive (read, parse, validate).
IDLE_PASSES = 2


class BatcherClosedError(RuntimeError):
    """The batcher stopped before answering."""


@dataclass(slots=True)
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Answers ``await predict(rows)`` by batching rows across concurrent callers."""

    def __init__(
        self,
        predict: PredictMatrix,
        *,
        max_batch_size: int,
        max_wait_s: float,
        in_thread: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict") if in_thread else None
        )
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Pending] = []
        self.calls = 0  # model calls made, for tests and logs

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="predict-batcher")

    async def stop(self) -> None:
        """Stop the worker; callers still waiting get :class:`BatcherClosedError`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pending in [*self._in_flight, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(BatcherClosedError("the model is being unloaded"))
        self._queue.clear()
        self._in_flight = []
        self._queued_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a (n, width) float64 matrix, batched with other callers'."""
        if self._task is None or self._wakeup is None:
            raise BatcherClosedError("the batcher is not running")
        loop = asyncio.get_running_loop()
        # Rows beyond the batch size travel as several entries, so no call exceeds it.
        parts = [
            _Pending(rows[i : i + self.max_batch_size], loop.create_future())
            for i in range(0, len(rows), self.max_batch_size)
        ]
        self._queue.extend(parts)
        self._queued_rows += len(rows)
        self._wakeup.set()
        if len(parts) == 1:
            return await parts[0].future
        return np.concatenate(await asyncio.gather(*(p.future for p in parts)))

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._gather()
            batch = self._take()
            if batch:
                self._in_flight = batch
                await self._answer(batch)
                self._in_flight = []

    async def _gather(self) -> None:
        """Let rows of requests already in flight join the batch (see module doc)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        idle = 0
        while self._queued_rows < self.max_batch_size and idle < IDLE_PASSES:
            if loop.time() >= deadline:
                return
            before = self._queued_rows
            await asyncio.sleep(0)
            idle = idle + 1 if self._queued_rows == before else 0

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if batch and rows + len(head.rows) > self.max_batch_size:
                break
            self._queue.popleft()
            if head.future.done():  # the caller went away (cancelled request)
                self._queued_rows -= len(head.rows)
                continue
            batch.append(head)
            rows += len(head.rows)
        self._queued_rows -= rows
        return batch

    async def _answer(self, batch: list[_Pending]) -> None:
        matrix = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        try:
            if self._executor is None:
                probabilities = self._predict(matrix)
            else:
                loop = asyncio.get_running_loop()
                probabilities = await loop.run_in_executor(self._executor, self._predict, matrix)
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            self.calls += 1
        if self._on_batch is not None:
            self._on_batch(len(matrix))
        start = 0
        for pending in batch:
            end = start + len(pending.rows)
            if not pending.future.done():
                pending.future.set_result(probabilities[start:end])
            start = end
