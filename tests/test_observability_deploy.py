"""The compose file's observability block: Prometheus, Grafana and Flower pinned, scraping the ports
the processes serve, the dashboards provisioned (parsed by the real Compose parser)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.test_deploy import compose_config  # noqa: F401  (the fixture: `docker compose config`)
from tests.test_observability_units import DASHBOARD


def test_compose_runs_prometheus_grafana_and_the_exporter(
    compose_config: dict[str, Any],  # noqa: F811
) -> None:
    """The compose services scrape what the processes serve, on the ports they serve it."""
    yaml = pytest.importorskip("yaml")
    services = compose_config["services"]
    # flower has its own profile, which the fixture's `config` leaves out: read the file
    raw = yaml.safe_load((DASHBOARD.parents[1] / "compose.yaml").read_text())["services"]
    assert raw["flower"]["profiles"] == ["flower"]
    for name in ("prometheus", "grafana", "flower"):
        image = raw[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image is not pinned"
    assert services["metrics"]["command"] == [
        "metrics",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "9108",
    ]
    for name in ("worker-ingest", "worker-infer", "worker-gpu"):
        env = services[name]["environment"]
        assert env["FACEPIPE_WORKER_METRICS_PORT"] == "9101"
        assert env["PROMETHEUS_MULTIPROC_DIR"]
    mounts = {v["target"]: v for v in services["grafana"]["volumes"]}
    assert mounts["/var/lib/grafana/dashboards"]["source"].endswith("docker/grafana/dashboards")
    config = yaml.safe_load((DASHBOARD.parents[1] / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["facepipe-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["facepipe-pipeline"]["static_configs"][0]["targets"] == ["metrics:9108"]
    workers = jobs["facepipe-workers"]["dns_sd_configs"][0]
    assert workers["port"] == 9101
    assert set(workers["names"]) == {"worker-ingest", "worker-infer", "worker-gpu"}
    provider = yaml.safe_load(
        (DASHBOARD.parent / "provisioning" / "dashboards" / "facepipe.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_prometheus_config_passes_promtool() -> None:
    """Prometheus' own checker reads docker/prometheus.yml as Prometheus will (the Debian
    package `prometheus` ships promtool; skipped where it is not installed)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    config = DASHBOARD.parents[1] / "prometheus.yml"
    run = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr
