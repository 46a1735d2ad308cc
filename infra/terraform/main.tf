data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.name}-${local.account_id}-${var.region}"

  service_image = var.service_image != "" ? var.service_image : "${aws_ecr_repository.service.repository_url}:${var.image_tag}"
  worker_image  = var.worker_image != "" ? var.worker_image : "${aws_ecr_repository.worker.repository_url}:${var.image_tag}"

  # ElastiCache with in-transit encryption and AUTH: Celery/kombu take
  # rediss://:<token>@host with the CA check on (the URLs are in the broker secret).
  redis_host   = aws_elasticache_replication_group.broker.primary_endpoint_address
  snapshot_uri = "s3://${aws_s3_bucket.data.bucket}/snapshots"

  # Settings shared by every facepipe container (see pipeline/config.py). The URLs holding
  # passwords are injected from Secrets Manager instead (local.secrets).
  common_environment = merge({
    FACEPIPE_HOME            = "/var/lib/facepipe"
    FACEPIPE_LOG_LEVEL       = "INFO"
    FACEPIPE_S3_REGION       = var.region
    FACEPIPE_SNAPSHOT_URI    = local.snapshot_uri
    FACEPIPE_MATCH_THRESHOLD = tostring(var.match_threshold)
    AWS_DEFAULT_REGION       = var.region
  }, var.extra_environment)

  environment = [for k in sort(keys(local.common_environment)) : {
    name  = k
    value = local.common_environment[k]
  }]

  broker_secrets = [
    {
      name      = "FACEPIPE_BROKER_URL"
      valueFrom = "${aws_secretsmanager_secret.broker.arn}:broker_url::"
    },
    {
      name      = "FACEPIPE_RESULT_BACKEND"
      valueFrom = "${aws_secretsmanager_secret.broker.arn}:result_backend::"
    },
  ]

  secrets = concat(local.broker_secrets, [{
    name      = "FACEPIPE_DATABASE_URL"
    valueFrom = aws_secretsmanager_secret.database_url.arn
  }])
}

# Image tags are immutable: a tag (image_tag) always names the same image, so a task definition
# cannot silently start other code after a push. Images are encrypted with the facepipe key and
# scanned on push.
resource "aws_ecr_repository" "service" {
  name                 = "${var.name}/service"
  image_tag_mutability = "IMMUTABLE"

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.kms_key_arn
  }

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_repository" "worker" {
  name                 = "${var.name}/worker"
  image_tag_mutability = "IMMUTABLE"

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = local.kms_key_arn
  }

  image_scanning_configuration {
    scan_on_push = true
  }
}

# Untagged layers left by interrupted pushes go after two weeks; tagged releases stay.
resource "aws_ecr_lifecycle_policy" "untagged" {
  for_each   = { service = aws_ecr_repository.service.name, worker = aws_ecr_repository.worker.name }
  repository = each.value

  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "expire untagged images"
      selection = {
        tagStatus   = "untagged"
        countType   = "sinceImagePushed"
        countUnit   = "days"
        countNumber = 14
      }
      action = { type = "expire" }
    }]
  })
}

# Container logs: encrypted with the facepipe key, kept log_retention_days (then deleted).
resource "aws_cloudwatch_log_group" "service" {
  for_each          = toset(["api", "ingest", "infer", "beat", "queue-metrics", "s3-listen", "migrate"])
  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}
