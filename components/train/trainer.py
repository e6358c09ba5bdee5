"""Distributed training: one worker per process under torchrun (gloo on CPU, NCCL on GPU).

Mixed precision on CUDA (bf16 autocast), gradient accumulation, a checkpoint every epoch and
resume from the newest one. ``python -m kubeforge.components.train.trainer CONFIG.json`` is the
worker entry point torchrun and the PyTorchJob pods run. With ``KUBEFORGE_METRICS_PORT`` set, each
worker serves its throughput (``kubeforge_train_samples_total``) on Prometheus ``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from prometheus_client import CollectorRegistry, Counter, start_http_server
from torch import nn

from kubeforge.components.common.model import Classifier, ModelSpec, accuracy, save
from kubeforge.components.common.params import StageParams, parse_hidden
from kubeforge.components.common.splits import load_split
from kubeforge.core.errors import KubeforgeError


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
    seed: int


@dataclass
class TrainConfig:
    """Everything a training worker needs; written as JSON for torchrun workers and pods."""

    train_path: str
    val_path: str
    output_dir: str
    params: TrainParams
    mixed_precision: bool = True
    checkpoint_interval_s: float = 60.0

    @property
    def checkpoint_dir(self) -> Path:
        """Where epoch checkpoints go."""
        return Path(self.output_dir) / "checkpoints"

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


def _setup_distributed() -> tuple[int, int, torch.device]:
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


def serve_throughput_metrics(rank: int) -> tuple[Counter | None, Callable[[], None]]:
    """Serve ``kubeforge_train_samples_total{rank}`` when ``KUBEFORGE_METRICS_PORT`` is set.

    Each worker serves its own counter on the port plus its ``LOCAL_RANK`` (so torchrun workers
    on one host do not collide); ``rate()`` of it is the training throughput in samples/s.

    Returns:
        The counter to increment (None when no port is set) and a function that stops serving.
    """
    port = os.environ.get("KUBEFORGE_METRICS_PORT")
    if not port:
        return None, lambda: None
    registry = CollectorRegistry()
    samples = Counter(
        "kubeforge_train_samples", "Training samples processed", ["rank"], registry=registry
    )
    server, _thread = start_http_server(
        int(port) + int(os.environ.get("LOCAL_RANK", "0")),
        addr=os.environ.get("KUBEFORGE_METRICS_ADDR", "0.0.0.0"),
        registry=registry,
    )

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return samples.labels(str(rank)), stop


def latest_checkpoint(directory: Path) -> Path | None:
    """Newest ``epoch-N.pt`` in ``directory``, if any."""
    found = sorted(directory.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return found[-1] if found else None


def train_worker(config: TrainConfig) -> TrainResult:
    """Train on this process's shard; rank 0 checkpoints and writes the model."""
    rank, world, device = _setup_distributed()
    params = config.params
    torch.manual_seed(params.seed)
    train = load_split(config.train_path)
    val = load_split(config.val_path)
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
    start_epoch = 0
    ckpt = latest_checkpoint(config.checkpoint_dir)
    if ckpt is not None:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
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
    started = time.perf_counter()
    last_checkpoint = time.monotonic()
    throughput, stop_metrics = serve_throughput_metrics(rank)
    try:
        for epoch in range(start_epoch, params.epochs):
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            generator.manual_seed(params.seed + epoch)
            wrapped.train()
            optimizer.zero_grad(set_to_none=True)
            for step, (xb, yb) in enumerate(loader):
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
                if boundary:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                samples += len(xb)
                if throughput is not None:
                    throughput.inc(len(xb))
                loss_sum += float(loss.detach()) * params.grad_accum_steps
                steps += 1
            # Checkpoint on a wall-clock interval (and after the last epoch): an epoch of a small
            # model takes milliseconds, and saving every epoch would cost more than the training.
            last = epoch + 1 == params.epochs
            if rank == 0 and (
                last or time.monotonic() - last_checkpoint >= config.checkpoint_interval_s
            ):
                _checkpoint(config, model, optimizer, epoch + 1)
                last_checkpoint = time.monotonic()
    finally:
        stop_metrics()
    elapsed = time.perf_counter() - started
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
    )
    if rank == 0:
        out = Path(config.output_dir)
        save(model, out / "model.pt", extra={"train": asdict(result)})
        (out / "result.json").write_text(json.dumps(asdict(result), indent=2))
    if world > 1:
        dist.destroy_process_group()
    return result


def _checkpoint(
    config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int
) -> None:
    directory = config.checkpoint_dir
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"epoch-{epoch}.tmp"
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, tmp
    )
    tmp.replace(directory / f"epoch-{epoch}.pt")
    for old in directory.glob("epoch-*.pt"):  # keep the newest two
        if int(old.stem.split("-")[1]) < epoch - 1:
            old.unlink(missing_ok=True)


def run_local(config: TrainConfig) -> TrainResult:
    """Train on this machine: ``params.nproc`` DDP processes (torchrun), or in-process for 1."""
    nproc = config.params.nproc
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if nproc <= 1:
        return train_worker(config)
    config_path = out / "config.json"
    config_path.write_text(config.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "kubeforge.components.train.trainer",
            str(config_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise KubeforgeError(f"torchrun training failed (exit {proc.returncode}):\n{tail}")
    raw: dict[str, Any] = json.loads((out / "result.json").read_text())
    return TrainResult(**raw)


def main(argv: list[str]) -> None:
    """Worker entry point: ``trainer CONFIG.json``."""
    config = TrainConfig.from_json(Path(argv[0]).read_text())
    train_worker(config)


if __name__ == "__main__":
    main(sys.argv[1:])
