"""Distributed training: one worker per process (gloo on CPU, NCCL on GPU).

Mixed precision on CUDA (bf16 autocast), gradient accumulation, checkpoints on a wall-clock
interval and on SIGTERM (after the optimizer step in flight), and resume from the newest one, even
mid-epoch. ``python -m kubeforge.components.train.trainer CONFIG`` (a path or a URI) is the worker
entry point that TorchX's ``dist.ddp`` (locally) and the PyTorchJob / TrainJob pods run.
With ``KUBEFORGE_METRICS_PORT`` set, each worker serves its throughput
(``kubeforge_train_samples_total``) on Prometheus ``/metrics``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kubeforge.components.common.params import StageParams, parse_hidden
from kubeforge.components.common.splits import load_split
from kubeforge.components.train.store import Store, fetch, is_remote, join
from kubeforge.core.errors import KubeforgeError

if TYPE_CHECKING:
    import torch
    from prometheus_client import Counter
    from torch import nn

# torch and prometheus_client are imported where they are used: the train stage's own process
# (which only starts the DDP workers, or a cluster job) never needs them, and torch alone takes
# seconds to import.


@dataclass(frozen=True)
class TrainParams(StageParams):
    """The train component's parameters; defaults and documentation: ``component.py``."""

    component = "kubeforge.components.train.component:train"

    hidden: str
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    grad_accum_steps: int
    nproc: int
    backend: str
    namespace: str
    workers: int
    gpus_per_replica: int
    node_selector: str
    tolerations: str
    expected_runtime: str
    seed: int


@dataclass
class TrainConfig:
    """Everything a training worker needs; written as JSON for local workers and pods.

    ``train_path``, ``val_path`` and ``output_dir`` are local paths or URIs (``mlflow-artifacts:``,
    or fsspec URLs such as ``s3://``): pods share no disk with the step, so on a cluster all three
    are URIs (see :mod:`kubeforge.components.train.store`).
    """

    train_path: str
    val_path: str
    output_dir: str
    params: TrainParams
    mixed_precision: bool = True
    checkpoint_interval_s: float = 60.0

    @property
    def store(self) -> Store:
        """Where checkpoints, the model and the result go."""
        return Store(self.output_dir)

    def to_json(self) -> str:
        """The config as JSON, for :meth:`from_json` in another process."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """A config written by :meth:`to_json` (or as ``json.dumps(asdict(config))``)."""
        raw = json.loads(text)
        return cls(**{**raw, "params": TrainParams(**raw["params"])})


@dataclass
class TrainResult:
    """What a finished training run reports."""

    val_accuracy: float
    train_loss: float
    epochs_run: int
    resumed_from_epoch: int
    samples_per_second: float
    world_size: int
    device: str
    parameters: int
    resumed_from_step: int = 0
    optimizer_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch (1-based ``epoch``): mean ``train_loss`` over all ranks and ``val_accuracy``."""


class TrainingInterrupted(KubeforgeError):
    """SIGTERM stopped training; a checkpoint of the last finished step was saved first."""

    def __init__(self, step: int) -> None:
        """Interrupted after optimizer step ``step`` (the checkpoint holds it)."""
        super().__init__(f"training stopped by SIGTERM; checkpoint saved at optimizer step {step}")
        self.step = step


# The exit status of a worker stopped by SIGTERM (128 + 15): not success, so the job restarts.
EXIT_INTERRUPTED = 143
CHECKPOINTS = "checkpoints"
WORKER_MODULE = "kubeforge.components.train.trainer"


def _setup_distributed() -> tuple[int, int, torch.device]:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


@dataclass(frozen=True)
class WorkerMetrics:
    """This worker's Prometheus counters (already labelled with its rank)."""

    samples: Counter
    optimizer_steps: Counter


def serve_throughput_metrics(rank: int) -> tuple[WorkerMetrics | None, Callable[[], None]]:
    """Serve this worker's counters when ``KUBEFORGE_METRICS_PORT`` is set.

    ``kubeforge_train_samples_total{rank}`` (``rate()`` of it is the training throughput in
    samples/s) and ``kubeforge_train_optimizer_steps_total{rank}``. Each worker serves them on the
    port plus its ``LOCAL_RANK`` (so workers on one host do not collide).

    Returns:
        The counters (None when no port is set) and a function that stops serving.
    """
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    port = os.environ.get("KUBEFORGE_METRICS_PORT")
    if not port:
        return None, lambda: None
    registry = CollectorRegistry()
    samples = Counter(
        "kubeforge_train_samples", "Training samples processed", ["rank"], registry=registry
    )
    steps = Counter(
        "kubeforge_train_optimizer_steps",
        "Optimizer steps taken (since the run started or resumed)",
        ["rank"],
        registry=registry,
    )
    server, _thread = start_http_server(
        int(port) + int(os.environ.get("LOCAL_RANK", "0")),
        addr=os.environ.get("KUBEFORGE_METRICS_ADDR", "0.0.0.0"),
        registry=registry,
    )

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return WorkerMetrics(samples.labels(str(rank)), steps.labels(str(rank))), stop


def latest_checkpoint(store: Store) -> str | None:
    """Name (under ``store``) of the newest ``checkpoints/step-N.pt``, if any."""
    found = [n for n in store.names(CHECKPOINTS) if n.startswith("step-") and n.endswith(".pt")]
    found.sort(key=lambda n: int(n.removesuffix(".pt").split("-")[1]))
    return f"{CHECKPOINTS}/{found[-1]}" if found else None


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[list[bool]]:
    """A flag that SIGTERM sets (in the main thread; elsewhere none arrives and it stays unset)."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def note(_signum: int, _frame: Any) -> None:
        flag[0] = True

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_requested(flag: list[bool], world: int, device: torch.device) -> bool:
    """Whether any rank got SIGTERM: all ranks agree, so all stop after the same step."""
    import torch
    import torch.distributed as dist

    if world == 1:
        return flag[0]
    stop = torch.tensor([1.0 if flag[0] else 0.0], device=device)
    dist.all_reduce(stop, op=dist.ReduceOp.MAX)
    return bool(stop.item() > 0)


def train_worker(config: TrainConfig) -> TrainResult:
    """Train on this process's shard; rank 0 checkpoints and writes the model.

    On SIGTERM (a pod's preemption notice) every rank stops after the optimizer step in flight,
    rank 0 saves that step, and :class:`TrainingInterrupted` is raised: a restart resumes there.
    """
    import torch
    import torch.distributed as dist
    from torch import nn

    from kubeforge.components.common.model import Classifier, ModelSpec, accuracy, save

    rank, world, device = _setup_distributed()
    params = config.params
    store = config.store
    torch.manual_seed(params.seed)
    with tempfile.TemporaryDirectory(prefix="kubeforge-train-") as scratch:
        train = load_split(fetch(config.train_path, Path(scratch) / "train"))
        val = load_split(fetch(config.val_path, Path(scratch) / "val"))
    x = train.features()
    y = train.label_indices()
    if (y < 0).any():
        raise KubeforgeError("the training data has unlabelled rows; run the label stage first")
    spec = ModelSpec(
        n_features=x.shape[1],
        hidden=tuple(parse_hidden(params.hidden)),
        classes=tuple(train.classes),
        feature_columns=tuple(train.feature_columns),
    )
    model = Classifier(spec, x.mean(axis=0), x.std(axis=0)).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    start_epoch, start_step, global_step = 0, 0, 0
    history: list[dict[str, float]] = []
    ckpt = latest_checkpoint(store)
    if ckpt is not None:
        state = torch.load(
            io.BytesIO(store.read_bytes(ckpt)), map_location=device, weights_only=False
        )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        start_step = int(state.get("step", 0))
        global_step = int(state.get("global_step", 0))
        history = list(state.get("history", []))
    resumed_from_step = global_step
    wrapped: nn.Module = model
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(model)

    data = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y))
    sampler: torch.utils.data.Sampler[int] | None = None
    if world > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(
            data, num_replicas=world, rank=rank, shuffle=True, seed=params.seed
        )
    generator = torch.Generator().manual_seed(params.seed)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=params.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator if sampler is None else None,
    )
    amp = config.mixed_precision and device.type == "cuda"
    loss_fn = nn.CrossEntropyLoss()
    samples, loss_sum, steps = 0, 0.0, 0
    val_x, val_y = val.features(), val.label_indices()
    evaluating = 0.0  # seconds spent on the per-epoch validation, left out of the throughput
    started = time.perf_counter()
    last_checkpoint = time.monotonic()
    metrics, stop_metrics = serve_throughput_metrics(rank)

    def end_epoch(epoch: int, epoch_loss: float, epoch_steps: int) -> float:
        """Add the finished ``epoch``'s point to the history (every rank calls it); seconds."""
        eval_started = time.perf_counter()
        mean_loss = _mean_over_ranks(epoch_loss, epoch_steps, world, device)
        if rank == 0:
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": round(mean_loss, 6),
                    "val_accuracy": _accuracy_on(model, val_x, val_y, device),
                }
            )
        return time.perf_counter() - eval_started

    try:
        with _sigterm_flag() as sigterm:
            for epoch in range(start_epoch, params.epochs):
                if sampler is not None and hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                generator.manual_seed(params.seed + epoch)  # the same order again on resume
                wrapped.train()
                optimizer.zero_grad(set_to_none=True)
                skip = start_step if epoch == start_epoch else 0
                epoch_loss, epoch_steps = 0.0, 0
                for step, (xb, yb) in enumerate(loader):
                    if step < skip:  # done before the checkpoint this run resumed from
                        continue
                    xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                    boundary = (step + 1) % params.grad_accum_steps == 0 or step + 1 == len(loader)
                    sync = (
                        wrapped.no_sync()  # type: ignore[operator]
                        if world > 1 and not boundary
                        else contextlib.nullcontext()
                    )
                    with sync, torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                        loss = loss_fn(wrapped(xb), yb) / params.grad_accum_steps
                    loss.backward()
                    samples += len(xb)
                    if metrics is not None:
                        metrics.samples.inc(len(xb))
                    loss_sum += float(loss.detach()) * params.grad_accum_steps
                    epoch_loss += float(loss.detach()) * params.grad_accum_steps
                    steps += 1
                    epoch_steps += 1
                    if not boundary:
                        continue
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    global_step += 1
                    if metrics is not None:
                        metrics.optimizer_steps.inc()
                    if _stop_requested(sigterm, world, device):
                        if step + 1 == len(loader):
                            # The epoch is done: its history point goes into the checkpoint
                            # (a resumed run starts at the next epoch and would never add it).
                            evaluating += end_epoch(epoch, epoch_loss, epoch_steps)
                            epoch, step = epoch + 1, -1
                        if rank == 0:
                            _checkpoint(
                                store, model, optimizer, epoch, step + 1, global_step, history
                            )
                        if world > 1:
                            dist.barrier()  # rank 0's checkpoint is written before any rank exits
                            dist.destroy_process_group()
                        raise TrainingInterrupted(global_step)
                evaluating += end_epoch(epoch, epoch_loss, epoch_steps)
                # Checkpoint on a wall-clock interval (and after the last epoch): an epoch of a
                # small model takes milliseconds, and saving every epoch would cost more than it.
                last = epoch + 1 == params.epochs
                if rank == 0 and (
                    last or time.monotonic() - last_checkpoint >= config.checkpoint_interval_s
                ):
                    _checkpoint(store, model, optimizer, epoch + 1, 0, global_step, history)
                    last_checkpoint = time.monotonic()
    finally:
        stop_metrics()
    elapsed = time.perf_counter() - started - evaluating
    if world > 1:
        dist.barrier()
    model.eval()
    result = TrainResult(
        val_accuracy=accuracy(model.cpu(), val.features(), val.label_indices()),
        train_loss=loss_sum / max(steps, 1),
        epochs_run=params.epochs - start_epoch,
        resumed_from_epoch=start_epoch,
        samples_per_second=samples * world / elapsed if elapsed > 0 else 0.0,
        world_size=world,
        device=device.type,
        parameters=sum(p.numel() for p in model.parameters()),
        resumed_from_step=resumed_from_step,
        optimizer_steps=global_step,
        history=history,
    )
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="kubeforge-train-") as scratch:
            local = Path(scratch) / "model.pt"
            save(model, local, extra={"train": asdict(result)})
            store.upload(local, "model.pt")
        store.write_bytes("result.json", json.dumps(asdict(result), indent=2).encode())
    if world > 1:
        dist.destroy_process_group()
    return result


def _mean_over_ranks(total: float, count: int, world: int, device: torch.device) -> float:
    """``total / count`` summed over all ranks (each rank saw its own shard of the epoch)."""
    import torch
    import torch.distributed as dist

    if world > 1:
        both = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(both)
        total, count = float(both[0]), int(both[1])
    return total / max(count, 1)


def _accuracy_on(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` (on ``device``) on ``x``; the model is left in eval mode."""
    import torch

    model.eval()
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(x), 8192):
            chunk = torch.tensor(x[start : start + 8192], dtype=torch.float32, device=device)
            predicted.append(model(chunk).argmax(dim=1).cpu().numpy())
    hits = np.concatenate(predicted) == y if predicted else np.zeros(0, dtype=bool)
    return round(float(hits.mean()), 6) if len(hits) else 0.0


def _checkpoint(
    store: Store,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    global_step: int,
    history: list[dict[str, float]],
) -> None:
    """Save the state after ``global_step`` optimizer steps; resume runs ``epoch`` from ``step``.

    The per-epoch history travels with it, so a resumed run's curve starts at epoch 1.
    """
    import torch

    buffer = io.BytesIO()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "global_step": global_step,
        "history": history,
    }
    torch.save(state, buffer)
    store.write_bytes(f"{CHECKPOINTS}/step-{global_step}.pt", buffer.getvalue())
    saved = [n for n in store.names(CHECKPOINTS) if n.startswith("step-") and n.endswith(".pt")]
    saved.sort(key=lambda n: int(n.removesuffix(".pt").split("-")[1]))
    for old in saved[:-2]:  # keep the newest two
        store.delete(f"{CHECKPOINTS}/{old}")


def read_result(store: Store) -> TrainResult:
    """The result rank 0 wrote when training finished."""
    raw: dict[str, Any] = json.loads(store.read_bytes("result.json"))
    return TrainResult(**raw)


def ddp_app(config_uri: str, nproc: int, env: dict[str, str] | None = None) -> Any:
    """The TorchX ``dist.ddp`` app that runs ``nproc`` workers of ``trainer CONFIG`` on one host."""
    from torchx.components.dist import ddp

    worker_env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    return ddp(config_uri, m=WORKER_MODULE, j=f"1x{nproc}", env=worker_env, name="kubeforge-train")


class LocalDdpRun:
    """Workers of one config run by TorchX (``dist.ddp`` on the ``local_cwd`` scheduler).

    TorchX starts torchrun in a session of its own; :meth:`terminate` sends it and its workers
    SIGTERM (what a kubelet sends a pod), and SIGKILL after TorchX's grace period.
    """

    def __init__(
        self, config_uri: str, nproc: int, log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        """Start the workers now."""
        from torchx.runner import get_runner

        self.log_dir = log_dir
        # TorchX's local scheduler installs SIGTERM/SIGINT handlers in this process: keep ours.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        # torchrun is found on PATH: put this interpreter's scripts first.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        try:
            self.runner = get_runner()
            self.handle = self.runner.run(
                ddp_app(config_uri, nproc, env), "local_cwd", cfg={"log_dir": str(log_dir)}
            )
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def wait(self) -> bool:
        """Wait until the workers exit; True if all succeeded."""
        from torchx.specs import AppState

        try:
            status = self.runner.wait(self.handle, wait_interval=0.2)
        finally:
            self.runner.close()
        return status is not None and status.state == AppState.SUCCEEDED

    def terminate(self) -> None:
        """SIGTERM to torchrun and its workers (SIGKILL after TorchX's 10 s); wait for them."""
        self.runner.cancel(self.handle)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the workers and torchrun wrote."""
        # torchrun's own stderr, with each worker's lines prefixed "[rank]:" (--tee); the
        # combined log can miss the last lines of workers that a signal stopped.
        logs = [
            p for p in sorted(self.log_dir.rglob("stderr.log")) if "torchelastic" not in p.parts
        ]
        text = "\n".join(p.read_text(errors="replace") for p in logs)
        return "\n".join(text.strip().splitlines()[-lines:])


def run_local(config: TrainConfig) -> TrainResult:
    """Train on this machine: ``params.nproc`` DDP processes (TorchX), or in-process for 1."""
    nproc = config.params.nproc
    if not is_remote(config.output_dir):
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    if nproc <= 1:
        return train_worker(config)
    store = config.store
    store.write_bytes("config.json", config.to_json().encode())
    with tempfile.TemporaryDirectory(prefix="kubeforge-torchx-") as logs:
        run = LocalDdpRun(join(store.root, "config.json"), nproc, Path(logs))
        if not run.wait():
            raise KubeforgeError(f"DDP training (TorchX dist.ddp) failed:\n{run.log_tail()}")
    return read_result(store)


def main(argv: list[str]) -> None:
    """Worker entry point: ``trainer CONFIG`` (a path or a URI of the config JSON).

    Exits with :data:`EXIT_INTERRUPTED` after a SIGTERM checkpoint, so the job restarts it.
    """
    parent, _, name = argv[0].rstrip("/").rpartition("/")
    config = TrainConfig.from_json(Store(parent or ".").read_bytes(name).decode())
    try:
        train_worker(config)
    except TrainingInterrupted as stopped:
        print(stopped, file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main(sys.argv[1:])
