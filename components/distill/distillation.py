"""Knowledge distillation into a smaller student, optional int8, a side-by-side report."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kubeforge.components.common.gates import retention_gate
from kubeforge.components.common.model import (
    Classifier,
    ModelSpec,
    accuracy,
    count_parameters,
    predict,
    save,
    serialized_bytes,
)
from kubeforge.components.common.params import StageParams, parse_hidden
from kubeforge.components.common.splits import LoadedSplit
from kubeforge.core.errors import KubeforgeError


@dataclass(frozen=True)
class DistillParams(StageParams):
    """The distill component's parameters; defaults and documentation: ``component.py``."""

    component = "kubeforge.components.distill.component:distill"

    hidden: str
    temperature: float
    alpha: float
    epochs: int
    quantize_int8: bool
    min_retention: float
    gate_confidence: float
    seed: int


@dataclass
class ModelProfile:
    """Accuracy, size and batch-1 CPU latency of one model."""

    accuracy: float
    parameters: int
    bytes: int
    latency_p50_ms: float
    latency_p95_ms: float


@dataclass
class DistillReport:
    """Teacher and student side by side, and whether the retention gate passed."""

    teacher: ModelProfile
    student: ModelProfile
    retention: float
    min_retention: float
    passed: bool
    quantized: bool
    parameter_ratio: float
    latency_ratio: float
    gate: dict[str, Any] = field(default_factory=dict)
    epoch_losses: list[float] = field(default_factory=list)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2)


def latency_ms(model: nn.Module, features: np.ndarray, runs: int = 300) -> tuple[float, float]:
    """p50 and p95 latency of single-row predictions on the CPU, in milliseconds."""
    model.eval()
    rows = torch.tensor(features[: max(1, min(len(features), 64))], dtype=torch.float32)
    times = []
    with torch.inference_mode():
        for i in range(runs + 20):
            row = rows[i % len(rows)].unsqueeze(0)
            start = time.perf_counter()
            model(row)
            if i >= 20:  # the first calls warm up allocator and dispatch caches
                times.append((time.perf_counter() - start) * 1000.0)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def profile(model: nn.Module, test: LoadedSplit) -> ModelProfile:
    """Measure one model on the test split."""
    x, y = test.features(), test.label_indices()
    p50, p95 = latency_ms(model, x)
    return ModelProfile(
        accuracy=round(accuracy(model, x, y), 4),
        parameters=count_parameters(model) or _quantized_parameters(model),
        bytes=serialized_bytes(model),
        latency_p50_ms=round(p50, 4),
        latency_p95_ms=round(p95, 4),
    )


def _quantized_parameters(model: nn.Module) -> int:
    total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if callable(weight):
            w = weight()
            total += w.numel() + w.shape[0]
    return total


def quantize(model: Classifier) -> nn.Module:
    """Dynamic int8 quantization of the Linear layers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {nn.Linear}, dtype=torch.qint8
        )
    return quantized


def distill_student(
    teacher: Classifier,
    train: LoadedSplit,
    test: LoadedSplit,
    out_dir: Path,
    params: DistillParams,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
) -> DistillReport:
    """Distill ``teacher`` into a student with ``params.hidden`` layers; gate on retention.

    Loss: ``alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(student, labels)``.
    Writes ``model.pt`` (the student) and ``report.json``; raises when the gate fails.
    """
    min_retention, temperature, alpha = params.min_retention, params.temperature, params.alpha
    if not 0.0 < min_retention <= 1.0:
        raise KubeforgeError(
            f"min_retention must be in (0, 1], got {min_retention}", "min_retention"
        )
    hidden = parse_hidden(params.hidden)
    seed = params.seed
    torch.manual_seed(seed)
    x = train.features()
    y = train.label_indices()
    spec = ModelSpec(
        n_features=x.shape[1],
        hidden=tuple(hidden),
        classes=teacher.spec.classes,
        feature_columns=teacher.spec.feature_columns,
    )
    student = Classifier(
        spec, teacher.get_buffer("mean").numpy(), teacher.get_buffer("std").numpy()
    )
    soft = torch.as_tensor(np.log(np.clip(predict(teacher, x), 1e-8, 1.0)))
    data = torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y), soft)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.epochs)
    epoch_losses: list[float] = []
    for _ in range(params.epochs):
        student.train()
        total, seen = 0.0, 0
        for xb, yb, teacher_logp in loader:
            logits = student(xb)
            # Teacher log-probs divided by T are its logits softened, up to a constant.
            soft_target = F.log_softmax(teacher_logp / temperature, dim=1)
            kd = F.kl_div(
                F.log_softmax(logits / temperature, dim=1),
                soft_target,
                log_target=True,
                reduction="batchmean",
            )
            loss = alpha * temperature**2 * kd + (1 - alpha) * F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach()) * len(xb)
            seen += len(xb)
        epoch_losses.append(round(total / max(seen, 1), 5))
        schedule.step()
    student.eval()
    final: nn.Module = quantize(student) if params.quantize_int8 else student

    teacher_profile = profile(teacher, test)
    student_profile = profile(final, test)
    y_test = test.label_indices()
    student_pred = predict(final, test.features()).argmax(axis=1)
    teacher_pred = predict(teacher, test.features()).argmax(axis=1)
    gate = retention_gate(
        student_pred == y_test, teacher_pred == y_test, min_retention, params.gate_confidence, seed
    )
    report = DistillReport(
        teacher=teacher_profile,
        student=student_profile,
        retention=round(gate.value, 4),
        min_retention=min_retention,
        passed=gate.passed,
        quantized=params.quantize_int8,
        parameter_ratio=round(teacher_profile.parameters / max(student_profile.parameters, 1), 2),
        latency_ratio=round(
            teacher_profile.latency_p50_ms / max(student_profile.latency_p50_ms, 1e-9), 2
        ),
        gate=gate.as_dict(),
        epoch_losses=epoch_losses,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(report.to_json())
    np.savez(out_dir / "predictions.npz", truth=y_test, teacher=teacher_pred, student=student_pred)
    if not report.passed:
        raise KubeforgeError(
            f"the student is below the retention gate: {gate.describe()} "
            f"(student {student_profile.accuracy:.4f} vs teacher {teacher_profile.accuracy:.4f}); "
            "the whole interval is below min_retention",
            "min_retention",
        )
    if params.quantize_int8:
        torch.save({"spec": asdict(spec), "model": final, "extra": {}}, out_dir / "model.pt")
    else:
        save(student, out_dir / "model.pt", extra={"distill": asdict(report)})
    return report
