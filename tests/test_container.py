"""The container recipes, checked without Docker (no daemon here): what each image copies, who it
runs as, which stage holds the build tools, the build context, and the real HEALTHCHECK command
run against a real server with `PORT` set."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "Dockerfile.gpu"]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(dockerfile):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _local_imports(path: Path) -> set[str]:
    """Top-level names of this repository's modules and packages that `path` imports."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return {name for name in names if (ROOT / f"{name}.py").exists() or (ROOT / name / "__init__.py").exists()}


def _needed_by_the_app() -> set[str]:
    """Files and folders the running app needs, following imports from app.py."""
    needed, todo = {"static", "pyproject.toml"}, ["app"]
    while todo:
        name = todo.pop()
        entry = f"{name}.py" if (ROOT / f"{name}.py").exists() else name
        if entry in needed:
            continue
        needed.add(entry)
        files = [ROOT / entry] if entry.endswith(".py") else list((ROOT / entry).rglob("*.py"))
        todo.extend(name for file in files for name in _local_imports(file))
    return needed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_final_stage_copies_what_the_app_imports(dockerfile: Path) -> None:
    final = _stages(dockerfile)[-1]
    copied = {
        source.rstrip("/")
        for instruction, args in final
        if instruction == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    missing = _needed_by_the_app() - copied
    assert not missing, f"{dockerfile.name} does not copy {sorted(missing)}"
    assert all((ROOT / source).exists() for source in copied)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_tools_stay_in_the_build_stage_and_the_image_runs_unprivileged(dockerfile: Path) -> None:
    stages = _stages(dockerfile)
    assert len(stages) == 2
    build, final = (" ".join(f"{i} {a}" for i, a in stage) for stage in stages)
    assert "build-essential" in build and "build-essential" not in final
    assert "COPY --from=build /opt/venv /opt/venv" in final
    users = [args for instruction, args in stages[-1] if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert stages[-1][-1][0] == "CMD"
    run_lines = [args for instruction, args in stages[0] if instruction == "RUN"]
    assert any("torch==2.13.0 --index-url" in line for line in run_lines), "PyTorch from its own index"


def test_the_cpu_image_installs_what_make_setup_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    index = re.search(r"^TORCH_INDEX\s*\?=\s*(\S+)", makefile, re.M)
    version = re.search(r"^TORCH_VERSION\s*:=\s*(\S+)", makefile, re.M)
    assert index and version
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"torch=={version.group(1)} --index-url {index.group(1)}" in dockerfile
    assert "-r /tmp/requirements.txt" in dockerfile


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for one path: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, glob) or fnmatch.fnmatch(p.split("/")[-1], glob) for p in prefixes):
            ignored = not negated
    return ignored


def test_the_build_context_leaves_out_the_venv_and_secrets() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".venv/lib/python3.11/site-packages/torch/x.so", ".env", ".git/HEAD", "logs/meetings.jsonl"):
        assert _dockerignored(path, patterns), path
    for path in sorted(_needed_by_the_app() | {"requirements.txt", "requirements-gpu.txt", "services/x/__init__.py"}):
        assert not _dockerignored(path, patterns), path


def _healthcheck(dockerfile: Path) -> str:
    [args] = [args for instruction, args in _stages(dockerfile)[-1] if instruction == "HEALTHCHECK"]
    return args.split(" CMD ", 1)[1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_healthcheck_follows_port(dockerfile: Path, live_server: str) -> None:
    """The image's HEALTHCHECK command, run by a shell as Docker does, against a real server."""
    command = _healthcheck(dockerfile)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    port = live_server.rsplit(":", 1)[1]
    healthy = subprocess.run(["sh", "-c", command], env={**env, "PORT": port}, capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    wrong = subprocess.run(
        ["sh", "-c", command], env={**env, "PORT": str(free_port())}, capture_output=True, timeout=30
    )
    assert wrong.returncode != 0
