"""Fan independent research tasks (walk-forward folds, Monte Carlo runs) out over processes.

Locally each task runs in a fresh process from a spawn-context pool (one task per
child: AutoGluon and LightGBM keep threads and memory that should not leak from one
fold into the next). With ``backend="ray"`` the same function runs as a Ray task,
one per worker process too (``max_calls=1``), on the cluster at ``ray_address`` or on
a Ray instance this process already started. ``workers=0`` runs inline, for debugging.
Results come back in task order, whatever order they finish in.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Literal, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")
Backend = Literal["local", "ray"]


def cpus_per_task(workers: int) -> int:
    """Cores each of ``workers`` concurrent tasks may use without oversubscribing."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int = 1,
    backend: Backend = "local",
    ray_address: str | None = None,
    description: str = "tasks",
    show_progress: bool = True,
    task_cpus: int = 1,
) -> list[R]:
    """``[fn(t) for t in tasks]``, computed in parallel; the first failure is raised."""
    bar = tqdm(total=len(tasks), desc=description, unit="task", disable=not show_progress)
    try:
        if backend == "ray":
            return _run_ray(fn, tasks, ray_address, bar, task_cpus)
        if workers <= 0:
            results = []
            for task in tasks:
                results.append(fn(task))
                bar.update()
            return results
        return _run_local(fn, tasks, workers, bar)
    finally:
        bar.close()


def _run_local(fn: Callable[[T], R], tasks: Sequence[T], workers: int, bar: tqdm) -> list[R]:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1)
    futures: dict[Future[R], int] = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
    results: dict[int, R] = {}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()  # raises the task's error
                bar.update()
    except BaseException:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(tasks))]


def _run_ray(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    ray_address: str | None,
    bar: tqdm,
    task_cpus: int,
) -> list[R]:
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False, include_dashboard=False)
    remote: Any = ray.remote(num_cpus=task_cpus, max_calls=1)(fn)
    refs = [remote.remote(task) for task in tasks]
    order = {ref: i for i, ref in enumerate(refs)}
    results: dict[int, R] = {}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[order[ref]] = ray.get(ref)
                bar.update()
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return [results[i] for i in range(len(tasks))]
