"""docker-compose.yml, deploy/prometheus.yml and the Grafana dashboard, checked without Docker (no
daemon here): they parse, start the README's commands with real settings, scrape the ports those
processes serve, and chart only series the gateways and workers export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from observability import Metrics
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_redis_postgres_two_gateways_two_workers_and_prometheus() -> None:
    services = _compose()["services"]
    assert {"redis", "postgres", "gateway-1", "gateway-2", "worker-1", "worker-2", "prometheus"} <= set(services)
    assert services["vllm"]["profiles"] == ["vllm"]  # optional
    for name in ("gateway-1", "gateway-2"):
        assert services[name]["command"][:2] == ["uvicorn", "app:app"]
    for name in ("worker-1", "worker-2"):
        assert services[name]["command"] == ["python", "-m", "worker"]
    assert (ROOT / "worker.py").is_file() and "def main" in (ROOT / "worker.py").read_text()
    assert "worker.py" in (ROOT / "Dockerfile").read_text()  # the image has both start commands


def test_every_process_gets_the_same_known_settings() -> None:
    services = _compose()["services"]
    known = {name.upper() for name in Settings.model_fields}
    shared = None
    for name in ("gateway-1", "gateway-2", "worker-1", "worker-2"):
        env = dict(services[name]["environment"])
        assert set(env) <= known, set(env) - known
        assert env["ORCHESTRATOR_BACKEND"] == "redis" and env["REDIS_URL"].startswith("redis://redis:")
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://") and "@postgres:" in env["DATABASE_URL"]
        common = {k: v for k, v in env.items() if k != "WORKER_METRICS_PORT"}
        assert shared is None or common == shared
        shared = common


def test_prometheus_scrapes_every_gateway_and_worker_where_they_serve() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: [target for static in job["static_configs"] for target in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert jobs["gateway"] == ["gateway-1:8000", "gateway-2:8000"]
    for target in jobs["worker"]:
        host, port = target.split(":")
        assert services[host]["environment"]["WORKER_METRICS_PORT"] == port


def test_the_dashboard_charts_only_exported_series() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {
        family.name + suffix
        for family in Metrics("redis").registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "meeting-assistant.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b((?:meeting_assistant|process)_\w+)", expr)}
    assert used and used <= exported, used - exported
    assert "meeting_assistant_session_takeovers_total" in used
