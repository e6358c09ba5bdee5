"""The chart's files agree with the rest of the repository (no cluster, no helm needed)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from kubeforge.testing.controlplane import repo_root

ROOT = repo_root()
CHART = ROOT / "charts" / "kubeforge"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_chart_crds_are_identical_copies_of_manifests_crds() -> None:
    source, copy = _files(ROOT / "manifests" / "crds"), _files(CHART / "crds")
    assert source, "manifests/crds is empty"
    assert sorted(copy) == sorted(source), "charts/kubeforge/crds/ and manifests/crds/ differ"
    differing = [name for name in source if copy[name] != source[name]]
    assert not differing, f"charts/kubeforge/crds/ differs from manifests/crds/ in {differing}"


def test_kustomization_lists_every_crd_and_the_base() -> None:
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    expected = {f"crds/{name}" for name in _files(ROOT / "manifests" / "crds")} | {"base"}
    assert set(kustomization["resources"]) == expected


def test_chart_readme_is_generated_from_values() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "chart_readme.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    readme = (CHART / "README.md").read_text()
    assert "| `operator.replicas` | int | `2` |" in readme
    assert '| `mlflow.existingSecret` | string | `""` |' in readme


def test_chart_readme_refuses_a_value_without_comment(tmp_path: Path) -> None:
    chart = tmp_path / "kubeforge"
    shutil.copytree(CHART, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("  # -- Image tag; empty", "  # Image tag; empty"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "chart_readme.py"), "--chart", str(chart)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "image.tag has no '# --' comment" in proc.stderr


def _dockerfile_stages() -> list[list[str]]:
    """Instructions of each stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    args: dict[str, str] = {}  # ARGs before the first FROM: their defaults name base images
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not stages and line.upper().startswith("ARG ") and "=" in line:
            name, default = line.split(None, 1)[1].split("=", 1)
            args[name] = default
            continue
        if line.upper().startswith("FROM "):
            for name, default in args.items():
                line = line.replace(f"${{{name}}}", default)
            stages.append([])
        stages[-1].append(line)
    return stages


def _dockerignore_allows(path: str) -> bool:
    """Whether ``path`` is in the build context, by the .dockerignore rules (last match wins)."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(
            fnmatch.fnmatch(prefix, pattern)
            or (pattern.startswith("**/") and fnmatch.fnmatch(parts[i], pattern[3:]))
            for i, prefix in enumerate(prefixes)
        )
        if hit:
            allowed = negate
    return allowed


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    names = {stage[0].split()[3] for stage in stages if len(stage[0].split()) == 4}
    for stage in stages:
        image = stage[0].split()[1]
        if image in names:  # built on an earlier stage
            continue
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), f"unpinned base {image}"
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "the final USER must be a numeric non-root UID"
    # The chart runs every pod as that same UID (runAsNonRoot needs a numeric USER).
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"runAsUser: {uid}" in helpers
    # The pinned dependencies in one layer, then the project alone above it (a code change
    # rebuilds only that small layer).
    deps = [
        i
        for i, line in enumerate(final)
        if re.search(r"pip install -c \S*constraints\.txt -r ", line)
    ]
    project = [i for i, line in enumerate(final) if "pip install --no-deps" in line]
    assert deps, "the final stage installs no pinned dependency list"
    assert project, "the final stage does not install the project alone (--no-deps)"
    assert deps[-1] < project[0], "the project must be installed above the dependency layer"


def test_dockerfile_copies_only_what_the_context_holds() -> None:
    for stage in _dockerfile_stages():
        for line in stage:
            if not line.upper().startswith("COPY ") or "--from=" in line:
                continue
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert _dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"


@pytest.mark.timeout(300)
def test_docker_context_builds_a_wheel_with_the_operator(tmp_path: Path) -> None:
    """What the image's `pip install .` installs, built from the .dockerignore'd context."""
    context = tmp_path / "context"
    # The Dockerfile copies only top-level entries, so only those the context keeps are walked.
    ignore = (ROOT / ".dockerignore").read_text()
    for top in ROOT.iterdir():
        if not _dockerignore_allows(top.name) and f"!{top.name}/" not in ignore:
            continue
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and _dockerignore_allows(rel):
                (context / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, context / rel)
    assert (context / "hack" / "constraints.txt").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("kubeforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kubeforge/operators/main.py" in names
    assert "kubeforge/components/train/component.py" in names
    assert not any("/tests/" in name for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kubeforge = kubeforge.cli.app:app" in zipfile.ZipFile(wheel).read(entry_points).decode()
