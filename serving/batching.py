"""Dynamic batching: requests waiting at the same time share one onnxruntime call.

How it stays (nearly) free when there is nothing to batch: with max wait 0, the default,
the first request of a batch yields the event loop for exactly one turn, in which every
request the loop has already read joins it, and then scores the batch itself. A lone
request pays one loop turn (~1 us) and no timer; under load, the requests parsed in the
same turn share one call. This is Triton's default too (max queue delay 0). A max wait
above 0 trades latency for bigger batches: a timer flushes the batch, or the request that
fills it to the max size does, at once.

Scoring runs on the event loop for small batches (one row takes onnxruntime ~20 us, less
than a hop to a thread) and in a worker thread above INLINE_ROWS, so a large request does
not stall the others.
"""

import asyncio
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

INLINE_ROWS = 256

Rows = NDArray[np.floating]
Scores = NDArray[np.float32]


class Batcher:
    """Scores rows for one model version, merging concurrent calls of `score`."""

    def __init__(
        self,
        predict: Callable[[Rows], Scores],
        observe: Callable[[Scores], None],
        *,
        max_rows: int,
        max_wait_seconds: float,
        enabled: bool = True,
    ) -> None:
        self._predict = predict
        self._observe = observe
        self._max_rows = max_rows
        self._max_wait = max_wait_seconds
        self._enabled = enabled
        self._pending: list[tuple[Rows, asyncio.Future[Scores]]] = []
        self._pending_rows = 0
        self._timer: asyncio.Handle | None = None
        self._in_threads: set[asyncio.Task[None]] = set()

    async def score(self, rows: Rows) -> Scores:
        """P(label = 1) per row; `rows` holds at most `max_rows` rows (checked by the
        protocol layer, which names the limit to the client)."""
        if not self._enabled:
            return await self._score_now(rows)
        if self._pending_rows + len(rows) > self._max_rows:
            self._flush()
        future: asyncio.Future[Scores] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._pending_rows += len(rows)
        if self._pending_rows >= self._max_rows:
            self._flush()
        elif len(self._pending) == 1:
            if self._max_wait > 0:
                self._timer = asyncio.get_running_loop().call_later(self._max_wait, self._flush)
            else:
                try:
                    # One turn of the event loop: every request already read joins.
                    await asyncio.sleep(0)
                finally:  # even if cancelled: the others in the batch still need it scored
                    if not future.done():
                        self._flush()
        return await future

    async def _score_now(self, rows: Rows) -> Scores:
        if len(rows) <= INLINE_ROWS:
            scores = self._predict(rows)
        else:
            scores = await asyncio.to_thread(self._predict, rows)
        self._observe(scores)
        return scores

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._pending_rows = self._pending, [], 0
        if not batch:
            return
        rows = batch[0][0] if len(batch) == 1 else np.concatenate([rows for rows, _ in batch])
        if len(rows) <= INLINE_ROWS:
            try:
                scores = self._predict(rows)
            except Exception as error:  # every request of the batch fails with it
                _fail(batch, error)
                return
            self._observe(scores)
            _resolve(batch, scores)
            return
        task = asyncio.get_running_loop().create_task(self._flush_in_thread(batch, rows))
        # The loop keeps only weak references to tasks: hold this one until it is done.
        self._in_threads.add(task)
        task.add_done_callback(self._in_threads.discard)

    async def _flush_in_thread(
        self, batch: list[tuple[Rows, asyncio.Future[Scores]]], rows: Rows
    ) -> None:
        try:
            scores = await asyncio.to_thread(self._predict, rows)
        except Exception as error:
            _fail(batch, error)
            return
        self._observe(scores)
        _resolve(batch, scores)


def _resolve(batch: list[tuple[Rows, asyncio.Future[Scores]]], scores: Scores) -> None:
    """Split the batch's scores back, in the order the requests joined."""
    start = 0
    for rows, future in batch:
        end = start + len(rows)
        if not future.done():  # a cancelled request (client gone) needs no answer
            future.set_result(scores[start:end])
        start = end


def _fail(batch: list[tuple[Rows, asyncio.Future[Scores]]], error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
