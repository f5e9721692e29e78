"""torch.distributed, the way torchrun launches it.

Under ``torchrun`` (or ``synergic run --devices N``, which calls it) the processes already exist
and their environment holds RANK, WORLD_SIZE and LOCAL_RANK: :func:`init_distributed` joins the
process group (NCCL on GPUs, gloo on CPUs) and nothing else changes for a single process.
Every rank draws the same pairs from the seeded sampler and takes its own contiguous share of
the global batch; only rank 0 writes.

So that N processes train what one process trains: BatchNorm normalises over the global batch
(:func:`convert_sync_batchnorm`, which also works on CPUs with gloo, where
``torch.nn.SyncBatchNorm`` refuses), rank 0's buffers are broadcast before every evaluation and
checkpoint (:func:`broadcast_buffers`), and ``synergic run --devices N`` (:func:`launch`) shows a
worker's error once, as one line.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from synergic.errors import SynergicError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, total: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's contiguous share of ``total`` items (no padding)."""
        return total * self.rank // self.world_size, total * (self.rank + 1) // self.world_size


def current() -> Distributed:
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return Distributed()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    if not launched_by_torchrun():
        return Distributed()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current()


def device_for(device: str, info: Distributed) -> str:
    """Each rank of a multi-GPU run gets its own GPU (cuda:LOCAL_RANK)."""
    if info.enabled and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{info.local_rank}"
    return device


def check_batch(batch_size: int, info: Distributed) -> None:
    if info.enabled and batch_size % info.world_size:
        raise SynergicError(
            f"train.batch_size {batch_size} is the global batch and must divide evenly among "
            f"{info.world_size} processes: use a multiple of {info.world_size}"
        )


def check_processes(processes: int, device: str) -> None:
    """Raises :class:`SynergicError` when ``processes`` processes on this machine cannot each
    have their device for ``train.device`` = ``device``: more processes than GPUs, one GPU
    named for all (``cuda:N``), or ``cuda`` without a GPU."""
    if processes < 2 or device == "cpu":
        return
    if device.startswith("cuda:"):
        raise SynergicError(
            f"train.device is {device}, one GPU, but --devices {processes} starts a process per "
            "GPU: set train.device to auto or cuda (or choose GPUs with CUDA_VISIBLE_DEVICES)"
        )
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and gpus == 0:
        raise SynergicError("train.device is 'cuda' but no CUDA GPU is available: use auto or cpu")
    if gpus and processes > gpus:
        raise SynergicError(
            f"--devices {processes} starts a process per GPU, but this machine has {gpus}: use "
            f"--devices {gpus} or fewer (or train.device=cpu for CPU processes)"
        )


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_objects(value) -> list:
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def average(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a float tensor (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / dist.get_world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- BatchNorm over the global batch ----------------------------------------------------------


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` holds a BatchNorm layer (any ``torch.nn`` or timm BatchNorm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def wants_sync_batchnorm(setting: bool | str, module: nn.Module, info: Distributed) -> bool:
    """``train.sync_batchnorm`` resolved: ``"auto"`` is on when ``info`` has several processes
    and ``module`` has BatchNorm; ``True``/``False`` as given (nothing to synchronise in one
    process). Raises ``ValueError`` for any other setting."""
    if setting not in (True, False, "auto"):
        raise ValueError(f"sync_batchnorm must be True, False or 'auto', got {setting!r}")
    if not info.enabled:
        return False
    return has_batchnorm(module) if setting == "auto" else bool(setting)


class _SumOverRanks(torch.autograd.Function):
    """The sum over ranks of a tensor, differentiable: the gradient of every rank's copy of the
    sum flows back to every rank's input (what ``torch.distributed.nn.functional.all_reduce``
    did; torch 2.14 deprecates it for the private ``_functional_collectives``)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _SumOverRanks.apply(grad, ctx.group), None


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch on CPUs (gloo), where ``torch.nn.SyncBatchNorm`` and
    DistributedDataParallel refuse to synchronise ("SyncBatchNorm layers only work with GPU
    modules").

    In training, under an initialised process group of more than one process, each channel's
    mean and (biased) variance are those of the union of every rank's input ``[B, C, *]``: two
    differentiable all-reduces of per-channel sums (:class:`_SumOverRanks`), whose backward
    all-reduces the gradients, as ``torch.nn.SyncBatchNorm`` does on GPUs. The running
    statistics follow with the unbiased variance of the global batch, as
    ``torch.nn.functional.batch_norm`` updates them for one process holding the whole batch.
    Statistics are float32; the output has the input's dtype. In evaluation, or in one process,
    it is plain BatchNorm. Build it with :func:`convert_sync_batchnorm`.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions, got {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = self.process_group
        if not self.training or group is None or dist.get_world_size(group) < 2:
            return super().forward(input)
        all_reduce = _SumOverRanks.apply
        self._check_input_dim(input)
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # a cumulative moving average, as in torch
                momentum = 1.0 / float(self.num_batches_tracked)
        x = input.float()
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = (1, channels) + (1,) * (x.dim() - 2)
        local_count = x.new_full((1,), x.numel() // channels)
        sums = all_reduce(torch.cat([x.sum(dims), local_count]), group)
        count = sums[-1]
        mean = sums[:-1] / count
        centered = x - mean.view(shape)
        # Two passes (the mean, then squared deviations from it), as one process computes them.
        variance = all_reduce((centered * centered).sum(dims), group) / count
        output = centered * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = variance * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return output.to(input.dtype)

    @property
    def process_group(self):
        # The default group, once initialised: the one DistributedDataParallel averages over.
        if dist.is_available() and dist.is_initialized():
            return dist.group.WORLD
        return None


class AllReduceBatchNormAct(AllReduceBatchNorm):
    """timm's ``BatchNormAct2d`` (BatchNorm, dropout, activation) as :class:`AllReduceBatchNorm`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(input)))


def convert_sync_batchnorm(module: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """``module`` with every BatchNorm layer (``torch.nn`` and timm's ``BatchNormAct2d``)
    normalising over the global batch, keeping its parameters, buffers and activation.

    For CUDA ``device``: timm's ``convert_sync_batchnorm`` (``torch.nn.SyncBatchNorm``). For the
    CPU: :class:`AllReduceBatchNorm`, which gives the same numbers there.
    """
    if torch.device(device).type != "cpu":
        from timm.layers import convert_sync_batchnorm as timm_convert

        return timm_convert(module)
    from timm.layers import BatchNormAct2d

    converted = module
    batchnorm = isinstance(module, nn.modules.batchnorm._BatchNorm)
    if batchnorm and not isinstance(module, AllReduceBatchNorm):
        act = isinstance(module, BatchNormAct2d)
        converted = (AllReduceBatchNormAct if act else AllReduceBatchNorm)(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )
        if act:
            converted.act, converted.drop = module.act, module.drop
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child, device))
    return converted


def broadcast_buffers(module: nn.Module) -> None:
    """Overwrite every buffer of ``module`` (BatchNorm running statistics) with rank 0's, so all
    ranks evaluate the weights rank 0 saves. A no-op in one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


# -- launching N processes, and their errors --------------------------------------------------

# Where the processes started by launch() report an error, one JSON file per rank.
WORKER_ERRORS_ENV = "SYNERGIC_WORKER_ERRORS"


@contextmanager
def errors_reported_to_launcher(enabled: bool = True) -> Iterator[None]:
    """In a process started by :func:`launch`: an exception is written to the launcher's folder
    (``rank-R.json``: the rank, whether it is a user error, its message and traceback, the time)
    and the process exits with status 1 without printing, so that the launcher shows one error
    instead of one per process. Elsewhere (one process, a plain torchrun), or not ``enabled``
    (``--debug``), exceptions pass through."""
    folder = os.environ.get(WORKER_ERRORS_ENV)
    if not enabled or not folder or not launched_by_torchrun():
        yield
        return
    try:
        yield
    except Exception as error:
        rank = int(os.environ.get("RANK", 0))
        report = {
            "rank": rank, "user_error": isinstance(error, SynergicError), "message": str(error),
            "type": type(error).__name__, "traceback": traceback.format_exc(), "time": time.time(),
        }
        (Path(folder) / f"rank-{rank}.json").write_text(json.dumps(report))
        raise SystemExit(1) from None


def launch(processes: int, arguments: list[str]) -> None:
    """Run ``python -m synergic ARGUMENTS`` as ``processes`` processes on this machine, as
    ``torchrun --standalone --nproc-per-node N -m synergic ARGUMENTS`` does (torch's own launcher,
    run in this process so that its failure report can be replaced by one line).

    Raises:
        SynergicError: a process failed: rank 0's user error (the lowest rank's when rank 0 has
            none), else which rank failed first and how (its traceback is printed above).
        KeyboardInterrupt: the launcher was stopped by a signal and no process said why.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    with tempfile.TemporaryDirectory(prefix="synergic-processes-") as folder:
        os.environ[WORKER_ERRORS_ENV] = folder
        # torchrun's warnings and failure logs would bury the one line that matters; this
        # process does nothing else meanwhile (the processes it starts log as usual).
        logging.disable(logging.CRITICAL)
        try:
            run(parse_args(["--standalone", f"--nproc-per-node={processes}", "-m", "synergic",
                            *arguments]))
        except ChildFailedError as failure:
            rank, first = failure.get_first_failure()
            raise _worker_error(Path(folder), rank, first.signal_name() if first.exitcode < 0
                                else f"exit status {first.exitcode}") from None
        except SignalException as stop:
            error = _worker_error(Path(folder), None, stop.sigval.name)
            raise (error if error is not None else KeyboardInterrupt()) from None
        finally:
            os.environ.pop(WORKER_ERRORS_ENV, None)
            logging.disable(logging.NOTSET)


def _worker_error(folder: Path, rank: int | None, how: str) -> SynergicError | None:
    """The one error to show for the reports in ``folder``: a user error (rank 0's first), else
    the earliest crash, whose traceback is printed; else that ``rank`` ended by ``how``."""
    import sys

    reports = [json.loads(path.read_text()) for path in folder.glob("rank-*.json")]
    user_errors = sorted((r for r in reports if r["user_error"]), key=lambda r: r["rank"])
    if user_errors:
        return SynergicError(user_errors[0]["message"])
    if reports:
        first = min(reports, key=lambda r: r["time"])
        sys.stderr.write(first["traceback"])
        return SynergicError(
            f"the training process of rank {first['rank']} failed with {first['type']} (traceback "
            "above): rerun with --debug to see every process"
        )
    if rank is None:
        return None
    return SynergicError(
        f"the training process of rank {rank} ended with {how} without reporting an error "
        "(killed, out of memory?); its output, if any, is above"
    )
