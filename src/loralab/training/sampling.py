"""One-task batches for multi-task training (MoRE's balanced sampler).

Each batch holds examples of a single task, drawn with probability softmax(|D_t| / sum_i |D_i|) (the
paper's exp(|D_t| / sum |D|) weights, normalised), so large tasks are favoured only mildly. Within a
task the examples are visited in a seeded random order, reshuffled each time the task is exhausted.
The whole schedule is a function of (seed, epoch), so resuming from a checkpoint replays it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch


def task_sampling_weights(sizes: Sequence[int]) -> torch.Tensor:
    """softmax(|D_t| / sum |D|) over tasks, fp64."""
    sizes_t = torch.tensor([float(s) for s in sizes], dtype=torch.float64)
    return torch.softmax(sizes_t / sizes_t.sum(), dim=0)


class TaskBatchSampler:
    """A batch sampler over feature indices grouped by task id.

    Args:
        task_ids: Task id of every feature, in dataset order.
        batch_size: Examples per batch (a task with fewer examples wraps around).
        seed: Base seed; the epoch is added (see `set_epoch`).
        num_batches: Batches per epoch; default ceil(len(task_ids) / batch_size).
    """

    def __init__(self, task_ids: Sequence[int], batch_size: int, seed: int = 0, num_batches: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.by_task: dict[int, list[int]] = {}
        for index, task in enumerate(task_ids):
            self.by_task.setdefault(int(task), []).append(index)
        if not self.by_task:
            raise ValueError("TaskBatchSampler needs at least one example")
        self.tasks = sorted(self.by_task)
        self.weights = task_sampling_weights([len(self.by_task[t]) for t in self.tasks])
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.num_batches = num_batches or math.ceil(len(task_ids) / batch_size)

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls this at the start of each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        orders = {t: [] for t in self.tasks}
        for _ in range(self.num_batches):
            task = self.tasks[int(torch.multinomial(self.weights, 1, generator=gen))]
            batch = []
            while len(batch) < self.batch_size:
                if not orders[task]:
                    pool = self.by_task[task]
                    orders[task] = [pool[i] for i in torch.randperm(len(pool), generator=gen).tolist()]
                batch.append(orders[task].pop())
            yield batch
