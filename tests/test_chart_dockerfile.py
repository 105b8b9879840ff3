"""The container image's Dockerfile, parsed (no Docker engine runs here, so it is not built):
a slim base, a non-root user matching the Helm chart's runAsUser, a read-only-root friendly
layout, a HEALTHCHECK running ``relay health-check``, and ``relay serve --config
/etc/relay/relay.yaml`` as the default command, in exec form so SIGTERM reaches the relay."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
VALUES = yaml.safe_load((ROOT / "charts" / "relay" / "values.yaml").read_text())
CONFIG_PATH = "/etc/relay/relay.yaml"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions: parser directives and comments dropped (also comment lines
    inside a continued instruction, as BuildKit does), backslash continuations joined."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            joined = " ".join(p for p in pending if p)
            keyword, _, args = joined.partition(" ")
            out.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def problems(text: str) -> list[str]:
    """What is wrong with a Dockerfile for this project (empty when it is fine)."""
    found: list[str] = []
    instructions = parse(text)
    args = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, default = ins.args.partition("=")
            args[name] = default
    all_stages = stages(instructions)
    if not all_stages:
        return ["no FROM"]
    final = all_stages[-1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), final[0].args.split()[0])
    if not re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", base):
        found.append(f"final base image {base!r} is not a slim Python image")
    kinds = [i.keyword for i in final]
    if "ADD" in kinds:
        found.append("ADD in the final stage (use COPY)")
    for ins in final:
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            found.append(f"line {ins.line}: the final stage copies from the build context")
    users = [i for i in final if i.keyword == "USER"]
    if not users:
        found.append("no USER in the final stage: the relay would run as root")
    else:
        user = users[-1].args.split(":")[0]
        if user in ("root", "0") or not re.fullmatch(r"[1-9][0-9]*", user):
            found.append(f"final USER {user!r} is not a numeric non-root uid")
        elif int(user) != VALUES["podSecurityContext"]["runAsUser"]:
            found.append(f"USER {user} differs from the chart's runAsUser")
    healthchecks = [i for i in final if i.keyword == "HEALTHCHECK"]
    if len(healthchecks) != 1:
        found.append("the final stage needs exactly one HEALTHCHECK")
    else:
        _, _, command = healthchecks[0].args.partition("CMD")
        try:
            argv = exec_form(command.strip())
        except (ValueError, AssertionError):
            found.append("HEALTHCHECK CMD is not in exec form")
        else:
            if argv[:2] != ["relay", "health-check"] or CONFIG_PATH not in argv:
                found.append(f"HEALTHCHECK runs {argv}, not relay health-check")
    entry = [i for i in final if i.keyword == "ENTRYPOINT"]
    cmd = [i for i in final if i.keyword == "CMD"]
    try:
        argv = (exec_form(entry[-1].args) if entry else []) + (
            exec_form(cmd[-1].args) if cmd else []
        )
    except (ValueError, AssertionError):
        found.append("ENTRYPOINT/CMD are not in exec form (SIGTERM would go to a shell)")
    else:
        if argv != ["relay", "serve", "--config", CONFIG_PATH]:
            found.append(f"the image runs {argv}, not relay serve --config {CONFIG_PATH}")
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    if "PYTHONDONTWRITEBYTECODE=1" not in env:
        found.append("PYTHONDONTWRITEBYTECODE=1 is not set (a read-only root cannot take .pyc)")
    volumes = " ".join(i.args for i in final if i.keyword == "VOLUME")
    for path in ("/var/lib/relay", "/tmp"):
        if f'"{path}"' not in volumes:
            found.append(f"{path} is not a VOLUME (the only writable paths)")
    exposed = {int(p.split("/")[0]) for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    ports = VALUES["ports"]
    if exposed != {ports["grpc"], ports["health"], ports["ops"]}:
        found.append(f"EXPOSE {sorted(exposed)} differs from the chart's ports")
    build = [i for s in all_stages[:-1] for i in s]
    if not any("compileall" in i.args for i in build if i.keyword == "RUN"):
        found.append("bytecode is not compiled at build time")
    return found


def test_dockerfile_meets_the_image_requirements() -> None:
    assert problems(DOCKERFILE.read_text()) == []


def test_the_checks_catch_a_root_image_with_a_shell_command() -> None:
    text = DOCKERFILE.read_text()
    text = re.sub(r"^USER .*$", "USER root", text, flags=re.M)
    text = re.sub(r"^CMD .*$", "CMD relay serve --config /etc/relay/relay.yaml", text, flags=re.M)
    text = text.replace("PYTHONDONTWRITEBYTECODE=1 \\\n    PYTHONUNBUFFERED", "PYTHONUNBUFFERED")
    text = text.replace("python:3.11-slim-bookworm", "python:3.11-bookworm")
    found = problems(text)
    assert any("USER 'root'" in p for p in found), found
    assert any("exec form" in p for p in found), found
    assert any("slim" in p for p in found), found
    assert any("PYTHONDONTWRITEBYTECODE" in p for p in found), found


def test_parser_joins_continuations_and_drops_comments() -> None:
    parsed = parse("# syntax=docker/dockerfile:1\nFROM a AS b\nRUN x \\\n    # note\n    && y\n")
    assert parsed == [Instruction("FROM", "a AS b", 2), Instruction("RUN", "x && y", 3)]


def test_dockerignore_sends_only_the_package() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "**"  # everything excluded first...
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "relay/"}  # ...then only these back
    copied = {i.args.split()[0] for i in parse(DOCKERFILE.read_text()) if i.keyword == "COPY"} - {
        "--from=build"
    }
    assert copied <= {"pyproject.toml", "relay"}
