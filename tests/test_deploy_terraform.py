"""terraform itself on infra/terraform: ``fmt -check``, ``validate`` against the real AWS
provider's schema, and ``plan`` against a moto server, read back as JSON.

What this needs is not installed by the project: the ``terraform`` binary and a local provider
mirror (``FACEPIPE_TF_PLUGIN_DIR``, default /opt/tf-plugins, laid out as terraform's
``filesystem_mirror``: registry.terraform.io/hashicorp/aws/<version>/<os_arch>/). Where they are
missing the tests skip, saying so; registry downloads are never attempted (the mirror is the
only installation source, and CHECKPOINT_DISABLE stops terraform's version check).

The stack also uses hashicorp/random (the two generated passwords). When the mirror lacks it, the
scratch copy the tests plan replaces the two ``random_password`` resources by ``terraform_data``
(built into terraform) and their ``.result`` by ``.output``: nothing the AWS provider checks
changes, the passwords' values are unknown in the plan either way.

The plan runs against moto for the only API reads it makes (STS GetCallerIdentity for the
account id, SSM for the ECS GPU AMI); it shows the values terraform will send, which the tests
check where the HCL alone cannot tell (evaluated conditions, the rendered key policy, the key
on every encrypted resource). An ``apply`` is not attempted: moto does not check what AWS
checks at create time (key policy principals, listener certificates); docs/deployment.md says
how an operator plans and applies against a sandbox account.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TF_DIR = REPO / "infra" / "terraform"
TERRAFORM = shutil.which("terraform")
PLUGIN_DIR = Path(os.environ.get("FACEPIPE_TF_PLUGIN_DIR", "/opt/tf-plugins"))
MIRROR = PLUGIN_DIR / "registry.terraform.io" / "hashicorp"
# The account moto answers GetCallerIdentity with; the example tfvars' region.
ACCOUNT = "123456789012"
REGION = "eu-west-1"
EXISTING_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f0e0d0c-0b0a-0908-0706-050403020100"

pytestmark = pytest.mark.skipif(TERRAFORM is None, reason="no terraform binary on PATH")
needs_provider = pytest.mark.skipif(
    not (MIRROR / "aws").is_dir(),
    reason=f"no hashicorp/aws provider in the local mirror {PLUGIN_DIR} (FACEPIPE_TF_PLUGIN_DIR)",
)


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM
    return subprocess.run(
        [TERRAFORM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _env(tmp: Path) -> dict[str, str]:
    rc = tmp / "terraformrc"
    rc.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{PLUGIN_DIR}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
    )
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_COLOR": "1",
    }


def test_terraform_fmt() -> None:
    """The files are in terraform's canonical format (needs no provider)."""
    assert TERRAFORM
    out = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _scratch_copy(dst: Path) -> None:
    """infra/terraform's files and the example tfvars in ``dst``; without the random provider in
    the mirror, its two passwords become terraform_data (see the module docstring)."""
    for path in TF_DIR.glob("*.tf"):
        shutil.copy(path, dst / path.name)
    shutil.copy(TF_DIR / "terraform.tfvars.example", dst / "terraform.tfvars")
    if (MIRROR / "random").is_dir():
        return
    changed = 0
    for path in dst.glob("*.tf"):
        text = path.read_text()
        new = re.sub(r"\n    random = \{\n[^}]*\}\n", "\n", text)
        new = re.sub(
            r'resource "random_password" "(\w+)" \{[^}]*\}',
            r'resource "terraform_data" "password_\1" {\n  input = "\1"\n}',
            new,
        )
        new = re.sub(r"random_password\.(\w+)\.result", r"terraform_data.password_\1.output", new)
        changed += new != text
        path.write_text(new)
    assert changed >= 2, "the random provider's uses moved: update _scratch_copy"
    left = "".join(p.read_text() for p in dst.glob("*.tf"))
    assert not re.search(r'resource "random_|random_\w+\.\w+\.\w+|"hashicorp/random"', left)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A scratch copy of the stack, `terraform init`ed from the local mirror only."""
    if not (MIRROR / "aws").is_dir():
        pytest.skip(f"no hashicorp/aws provider in the local mirror {PLUGIN_DIR}")
    tmp = tmp_path_factory.mktemp("terraform")
    work = tmp / "stack"
    work.mkdir()
    _scratch_copy(work)
    env = _env(tmp)
    init = _run(["init", "-backend=false", "-input=false", "-no-color"], work, env)
    assert init.returncode == 0, init.stdout + init.stderr
    yield work, env


@needs_provider
def test_terraform_validate(workdir: tuple[Path, dict[str, str]]) -> None:
    """Every argument and block exists in the AWS provider's schema, types and references
    check out."""
    work, env = workdir
    out = _run(["validate", "-no-color"], work, env)
    assert out.returncode == 0, out.stdout + out.stderr


def _point_at_moto(work: Path, moto: str) -> None:
    """An override file: fake credentials, STS and SSM answered by the moto server."""
    (work / "moto_override.tf").write_text(
        'provider "aws" {\n'
        '  access_key                  = "testing"\n'
        '  secret_key                  = "testing"\n'
        "  skip_credentials_validation = true\n"
        "  skip_metadata_api_check     = true\n"
        f'  endpoints {{\n    sts = "{moto}"\n    ssm = "{moto}"\n  }}\n'
        "}\n"
    )


def _plan(work: Path, env: dict[str, str], moto: str, name: str, *args: str) -> dict[str, Any]:
    _point_at_moto(work, moto)
    plan = _run(["plan", "-input=false", "-no-color", f"-out={name}", *args], work, env)
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr
    shown = _run(["show", "-json", name], work, env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _resources(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Planned resources by address, with the values known at plan time."""
    return {
        r["address"]: r.get("values", {})  # a resource whose every value is unknown has none
        for r in plan["planned_values"]["root_module"]["resources"]
        if r["mode"] == "managed"
    }


@pytest.fixture(scope="module")
def plan_new_key(workdir: tuple[Path, dict[str, str]], moto_server: str) -> dict[str, Any]:
    """The example tfvars: the stack creates its own key."""
    return _plan(*workdir, moto_server, "new-key.plan")


@pytest.fixture(scope="module")
def plan_existing_key(workdir: tuple[Path, dict[str, str]], moto_server: str) -> dict[str, Any]:
    """The example tfvars with an existing key: its ARN is known at plan time, so every resource
    shows which key it is encrypted with."""
    return _plan(*workdir, moto_server, "existing-key.plan", f"-var=kms_key_arn={EXISTING_KEY}")


def _kms_attributes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every attribute whose name says it holds a KMS key, anywhere in a resource's values."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if re.search(r"kms_key(_id)?$|kms_master_key_id$|key_id$", key) and not isinstance(
                value, dict | list
            ):
                yield here, value
            yield from _kms_attributes(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _kms_attributes(value, f"{path}[{i}]")


def test_plan_encrypts_everything_with_the_one_key(plan_existing_key: dict[str, Any]) -> None:
    """With kms_key_arn set, every key attribute of every planned resource is that key, and
    every resource that keeps data at rest has one (the access-log bucket excepted: SSE-S3)."""
    resources = _resources(plan_existing_key)
    assert not any(a.startswith("aws_kms_key.") for a in resources)  # no second key
    seen = {
        f"{address}{attr}": value
        for address, values in resources.items()
        for attr, value in _kms_attributes(values)
        if value not in (None, "")
    }
    assert set(seen.values()) == {EXISTING_KEY}, seen
    encrypted_types = {attr.split(".")[0] for attr in seen}
    assert encrypted_types >= {
        "aws_s3_bucket_server_side_encryption_configuration",  # photos, snapshots, exports
        "aws_sqs_queue",  # event queue and its dead-letter queue
        "aws_secretsmanager_secret",
        "aws_elasticache_replication_group",
        "aws_db_instance",
        "aws_cloudwatch_log_group",
        "aws_ecr_repository",
        "aws_ecs_cluster",  # Fargate ephemeral storage
        "aws_launch_template",  # GPU instances' root volumes
        "aws_kms_grant",  # the Auto Scaling role's use of the key for those volumes
    }
    # every instance of those types, not just one of each
    for address, values in resources.items():
        if address.split(".")[0] in {
            "aws_sqs_queue",
            "aws_secretsmanager_secret",
            "aws_cloudwatch_log_group",
            "aws_ecr_repository",
        }:
            assert any(v == EXISTING_KEY for _, v in _kms_attributes(values)), address
    db = resources["aws_db_instance.library"]
    assert db["kms_key_id"] == db["performance_insights_kms_key_id"] == EXISTING_KEY
    ebs = resources["aws_launch_template.gpu"]["block_device_mappings"][0]["ebs"][0]
    assert ebs["encrypted"] == "true" and ebs["kms_key_id"] == EXISTING_KEY
    logs_sse = resources["aws_s3_bucket_server_side_encryption_configuration.logs"]
    default = logs_sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "AES256"
    statements = json.loads(
        plan_existing_key["planned_values"]["outputs"]["kms_key_service_statements"]["value"]
    )
    assert {s["Sid"] for s in statements} >= {"CloudWatchLogs", "S3EventNotifications"}


def test_plan_key_policy_is_not_open(plan_new_key: dict[str, Any]) -> None:
    """The created key's policy: the account itself is the only AWS principal (no "*", no other
    account); every service statement is limited by its encryption context to this stack."""
    resources = _resources(plan_new_key)
    key = resources["aws_kms_key.main[0]"]
    assert key["enable_key_rotation"] is True and key["deletion_window_in_days"] == 30
    policy = json.loads(key["policy"])
    admin, *services = policy["Statement"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert admin["Sid"] == "AccountAdministration"
    assert {s["Sid"] for s in services} == {
        "CloudWatchLogs",
        "S3EventNotifications",
        "FargateEphemeralStorage",
        "FargateEphemeralStorageGrants",
    }
    for statement in services:
        assert statement["Effect"] == "Allow"
        assert set(statement["Principal"]) == {"Service"}, statement
        assert "kms:*" not in json.dumps(statement["Action"])
        context = json.dumps(statement["Condition"])
        assert "kms:EncryptionContext:" in context, statement["Sid"]
        assert ACCOUNT in context, statement["Sid"]  # this account's resources only
    logs = next(s for s in services if s["Sid"] == "CloudWatchLogs")
    groups = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    # every log group of the stack falls under the statement's patterns
    for address, values in resources.items():
        if address.startswith("aws_cloudwatch_log_group."):
            arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{values['name']}"
            assert any(re.fullmatch(g.replace("*", ".*"), arn) for g in groups), arn
    s3 = next(s for s in services if s["Sid"] == "S3EventNotifications")
    queue = resources["aws_sqs_queue.events"]["name"]
    assert s3["Condition"]["StringEquals"] == {
        "kms:EncryptionContext:aws:sqs:arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
    }
    grant = resources["aws_kms_grant.gpu_volumes"]
    assert "CreateGrant" in grant["operations"] and "RetireGrant" not in grant["operations"]


def test_plan_tls_logs_and_images(plan_new_key: dict[str, Any]) -> None:
    """Evaluated values: HTTPS with the TLS 1.2+ policy and a redirect on :80, a stated
    retention on every log group (the database's exported logs included), immutable tags."""
    resources = _resources(plan_new_key)
    https = resources["aws_lb_listener.https"]
    assert https["protocol"] == "HTTPS" and https["port"] == 443
    assert https["ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["certificate_arn"].startswith(f"arn:aws:acm:{REGION}:")
    http = resources["aws_lb_listener.http"]["default_action"][0]
    assert http["type"] == "redirect" and http["redirect"][0]["protocol"] == "HTTPS"
    groups = {
        v["name"]: v["retention_in_days"]
        for a, v in resources.items()
        if a.startswith("aws_cloudwatch_log_group.")
    }
    assert set(groups.values()) == {365}
    assert {
        "/aws/rds/instance/facepipe-library/postgresql",
        "/aws/rds/instance/facepipe-library/upgrade",
    } <= set(groups)
    db = resources["aws_db_instance.library"]
    assert {
        f"/aws/rds/instance/{db['identifier']}/{e}" for e in db["enabled_cloudwatch_logs_exports"]
    } <= set(groups)
    for repo in ("service", "worker"):
        assert resources[f"aws_ecr_repository.{repo}"]["image_tag_mutability"] == "IMMUTABLE"
    assert db["iam_database_authentication_enabled"] is True and db["monitoring_interval"] == 60
    broker = resources["aws_elasticache_replication_group.broker"]
    # at_rest_encryption_enabled is a string in provider 5.x ("true"), a bool before
    assert str(broker["at_rest_encryption_enabled"]).lower() == "true"
    assert broker["transit_encryption_enabled"] is True


@needs_provider
def test_variable_validations_refuse_weak_settings(
    workdir: tuple[Path, dict[str, str]], moto_server: str
) -> None:
    """A TLS policy that still speaks TLS 1.1 (of the TLS 1.3 family, so the prefix alone would
    not tell), `latest` as the image tag, an alias for the key and a global (CloudFront) web ACL
    are refused, all four at once, before anything is planned."""
    work, env = workdir
    _point_at_moto(work, moto_server)
    out = _run(
        [
            "plan",
            "-input=false",
            "-no-color",
            "-var=ssl_policy=ELBSecurityPolicy-TLS13-1-1-2021-06",  # TLS 1.1 and up
            "-var=image_tag=latest",
            "-var=kms_key_arn=alias/facepipe",
            f"-var=waf_web_acl_arn=arn:aws:wafv2:us-east-1:{ACCOUNT}:global/webacl/x/1",
        ],
        work,
        env,
    )
    assert out.returncode != 0
    errors = " ".join((out.stdout + out.stderr).split())
    for message in (
        "ssl_policy must be a TLS 1.2+ policy",
        "image_tag must be a Docker tag naming one build",
        "kms_key_arn must be empty or a KMS key ARN",
        "waf_web_acl_arn must be empty or a REGIONAL WAFv2 web ACL ARN",
    ):
        assert message in errors, errors[-3000:]
