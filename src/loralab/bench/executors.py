"""Where jobs run: in this process, one after another (`local`, the default), or as Ray tasks (`ray`).

Both executors run the same function (`run_job`) on the same jobs (a cell, or a multi-task model's
cells) and hand every job's rows back to the driver through `on_result`, which writes the database;
workers never write it. So the database, and with it the report, is the same whichever executor ran
the jobs. A failing job is reported through `on_failure` and the others go on: one bad cell should not
cost a night of results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from loralab.bench.cell import RunContext, build_model_library, run_job
from loralab.bench.grid import Resources
from loralab.bench.plan import Job, job_label
from loralab.errors import UnknownNameError, UserInputError

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
OnResult = Callable[[Job, list[dict[str, Any]]], None]
OnFailure = Callable[[Job, str], None]


class Executor(Protocol):
    name: str

    def build_libraries(self, models: Sequence[str], ctx: RunContext) -> None: ...

    def run(self, jobs: Sequence[Job], ctx: RunContext, on_result: OnResult, on_failure: OnFailure) -> None: ...

    def close(self) -> None: ...


def make_executor(name: str, *, address: str | None = None, resources: Resources | None = None) -> Executor:
    """The executor by name; fails before any work if it is unknown or Ray is not installed."""
    if name not in EXECUTORS:
        raise UnknownNameError("executor", name, EXECUTORS)
    if address is not None and name != "ray":
        raise UserInputError("--address is for --executor ray")
    if name == "local":
        return LocalExecutor()
    return RayExecutor(address=address, resources=resources or Resources())


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _eta(start: float, done: int, total: int) -> str:
    if not done:
        return ""
    left = (time.monotonic() - start) / done * (total - done)
    return f" (about {left / 60:.0f} min left)" if left >= 60 else f" (about {left:.0f} s left)"


class LocalExecutor:
    """Jobs one at a time in this process (one model copy in memory at a time)."""

    name = "local"

    def build_libraries(self, models: Sequence[str], ctx: RunContext) -> None:
        for model in models:
            build_model_library(model, ctx)

    def run(self, jobs: Sequence[Job], ctx: RunContext, on_result: OnResult, on_failure: OnFailure) -> None:
        start = time.monotonic()
        for i, job in enumerate(jobs, start=1):
            logger.info("[%d/%d] %s%s", i, len(jobs), job_label(job), _eta(start, i - 1, len(jobs)))
            try:
                rows = run_job(job, ctx)
            except Exception as exc:
                logger.exception("job %s failed", job[0].job_id)
                on_failure(job, _one_line(exc))
                continue
            on_result(job, rows)

    def close(self) -> None:
        pass


class RayExecutor:
    """Jobs as Ray tasks with per-cell resources; results come back to the driver, which stores them.

    `address` joins a running cluster (`ray start --head` / `auto`); without it a local cluster is
    started (or the one this process already started is used). On a cluster of several machines, the
    output folder and the library must be on a file system that every node sees.
    """

    name = "ray"

    def __init__(self, address: str | None, resources: Resources) -> None:
        from loralab.utils.extras import require_extra

        ray = require_extra("ray", "--executor ray")
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
            self._started = True
        self._options = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": 0}

    def build_libraries(self, models: Sequence[str], ctx: RunContext) -> None:
        """One model at a time (they share the library's manifest), each on a worker with the cell resources."""
        build = self._ray.remote(**self._options)(build_model_library)
        for model in models:
            self._ray.get(build.remote(model, ctx))

    def run(self, jobs: Sequence[Job], ctx: RunContext, on_result: OnResult, on_failure: OnFailure) -> None:
        ray = self._ray
        remote = ray.remote(**self._options)(run_job)
        pending = {remote.remote(job, ctx): job for job in jobs}
        logger.info("submitted %d jobs to Ray (%s per job)", len(pending), self._options)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        rows = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - RayTaskError wraps the job's own error
                        cause = getattr(exc, "cause", None) or exc
                        logger.error("job %s failed: %s", job[0].job_id, _one_line(cause))
                        on_failure(job, _one_line(cause))
                        continue
                    on_result(job, rows)
        finally:
            for ref in pending:  # interrupted: do not leave cells running for nobody
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
