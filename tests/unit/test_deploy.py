"""The blueprint, the Dockerfile and the Procfile name only things the project has. No container
engine runs here, so the Dockerfile is checked against the tree instead of being built."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
KNOWN_ENV = set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', (ROOT / "src/veo/config.py").read_text()))
VEO_SUBCOMMANDS = {"migrate", "serve", "users", "flow", "demo", "rotate-secret"}


def check_command(cmd: str) -> None:
    argv = shlex.split(cmd)
    if argv[0] == "arq":
        assert argv[1] == "veo.worker.Settings"
        import veo.worker

        assert "Settings" in (veo.worker.__getattr__.__code__.co_consts or ())
        return
    assert argv[0] in SCRIPTS, f"{argv[0]} is not a console script"
    if argv[0] == "veo":
        assert argv[1] in VEO_SUBCOMMANDS, cmd


def test_render_blueprint() -> None:
    doc = yaml.safe_load((ROOT / "render.yaml").read_text())
    services = {s["name"]: s for s in doc["services"]}
    web, worker = services["veo-web"], services["veo-worker"]
    assert web["type"] == "web" and worker["type"] == "worker"
    assert web["healthCheckPath"] == "/api/health"
    assert web["preDeployCommand"] == "veo migrate"
    assert worker["dockerCommand"] == "arq veo.worker.Settings"
    for svc in (web, worker):
        assert (ROOT / svc["dockerfilePath"]).is_file()
        check_command(svc["dockerCommand"])
    check_command(web["preDeployCommand"])
    kv = services["veo-kv"]
    assert kv["type"] == "keyvalue" and kv["maxmemoryPolicy"] == "noeviction"
    assert doc["databases"][0]["name"] == "veo-db"
    # every variable is one the settings know; every secret is left to the operator
    groups = {g["name"]: g["envVars"] for g in doc["envVarGroups"]}
    seen = set()
    for svc in (web, worker):
        for var in svc["envVars"]:
            for item in groups[var["fromGroup"]] if "fromGroup" in var else [var]:
                assert item["key"] in KNOWN_ENV, item["key"]
                seen.add(item["key"])
                if item["key"] in {"VEO_SECRET_KEY", "VEO_ADMIN_TOKEN", "GEMINI_API_KEYS",
                                   "S3_SECRET_KEY", "S3_ACCESS_KEY"}:
                    assert item.get("sync") is False and "value" not in item
                if "fromDatabase" in item:
                    assert item["fromDatabase"]["name"] == "veo-db"
                if "fromService" in item:
                    assert item["fromService"]["name"] in services
    assert {"DATABASE_URL", "REDIS_URL", "VEO_SECRET_KEY", "S3_BUCKET"} <= seen


def test_health_path_is_a_route() -> None:
    from veo.web.app import routes

    assert "/api/health" in {getattr(r, "path", None) for r in routes()}


def test_dockerfile_matches_the_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \S*(bookworm|debian)", text, re.MULTILINE)
    assert "apt-get install" in text and " chromium" in text
    assert "playwright install" not in text
    assert "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1" in text
    assert "FLOW_BROWSER_EXECUTABLE=/usr/bin/chromium" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    for src in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (ROOT / src).exists(), src
    assert "VEO_SQL_DIR=/app/sql" in text and "COPY sql ./sql" in text
    entry = re.search(r'^ENTRYPOINT \[(.*)\]', text, re.MULTILINE)
    assert entry and "/usr/local/bin/veo-entrypoint" in entry.group(1)
    assert "COPY docker/entrypoint.sh /usr/local/bin/veo-entrypoint" in text
    cmd = re.search(r'^CMD \[(.*)\]', text, re.MULTILINE)
    assert cmd
    check_command(" ".join(part.strip().strip('"') for part in cmd.group(1).split(",")))
    script = (ROOT / "docker/entrypoint.sh").read_text()
    assert "xvfb-run" in script and "FLOW_HEADLESS" in script and 'exec "$@"' in script
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "storage_state*.json" in ignored


def test_procfile() -> None:
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if line.strip())
    assert set(lines) == {"web", "worker", "release"}
    assert lines["worker"].strip() == "arq veo.worker.Settings"
    assert lines["release"].strip() == "veo migrate"
    for cmd in lines.values():
        check_command(cmd.strip())


def test_entrypoint_runs_headed_under_xvfb(tmp_path: Path) -> None:
    import os
    import subprocess

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "xvfb-run").write_text("#!/bin/sh\necho XVFB \"$@\"\n")
    (fake_bin / "xvfb-run").chmod(0o755)
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}"}
    script = str(ROOT / "docker/entrypoint.sh")
    out = subprocess.run(["sh", script, "echo", "plain"], env={**env, "FLOW_HEADLESS": "true"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "plain"
    out = subprocess.run(["sh", script, "echo", "headed"], env={**env, "FLOW_HEADLESS": "false"},
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("XVFB") and out.strip().endswith("echo headed")


def test_every_runbook_command_is_exercised_by_a_test() -> None:
    runbook = (ROOT / "docs/operations.md").read_text()
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    commands = set(re.findall(r"`((?:veo|veo-auth|arq) [^`]+)`", runbook))
    commands |= {line[2:].strip() for line in runbook.splitlines() if line.startswith("$ ")}
    assert len(commands) >= 10
    missing = []
    for cmd in commands:
        argv = [a for a in shlex.split(cmd) if "=" not in a or a.startswith("-")]
        if argv[0] == "curl":
            path = next(a for a in argv if a.startswith("http")).split("HOST", 1)[1]
            if f'"{path}"' not in tests_text:
                missing.append(cmd)
            continue
        head = argv[:2]
        needle = ", ".join(f'"{a}"' for a in head)
        if needle not in tests_text and f"{head[0]} {head[1]}" not in tests_text:
            missing.append(cmd)
    assert not missing, missing
