# One customer-managed KMS key for everything facepipe keeps at rest: the data bucket (photos,
# FAISS snapshots, exports), the S3 event queues (object keys, i.e. group and person names), the
# Secrets Manager secrets, the ElastiCache broker, the RDS library (storage and Performance
# Insights), the CloudWatch log groups (containers and the database's exported logs), the ECR
# repositories, the Fargate tasks' ephemeral storage and the GPU instances' root volumes (where
# the tasks' /tmp and FACEPIPE_HOME volumes live). The only data at rest on other keys are the
# access logs (logs_bucket.tf: their delivery services accept SSE-S3 only), and the two log groups
# AWS services create themselves (RDSOSMetrics, Container Insights: metrics, no request data).
#
# The operator controls (and can audit, disable or schedule for deletion) the key that unlocks the
# biometric data. Set var.kms_key_arn to use an existing key instead: its policy must then also
# hold the service statements below (`terraform output kms_key_service_statements` prints them).

locals {
  kms_key_arn = var.kms_key_arn != "" ? var.kms_key_arn : aws_kms_key.main[0].arn

  # Built from names, not resource attributes: the resources refer to the key, so the key's
  # policy cannot refer back to them.
  events_queue_arn = "arn:${local.partition}:sqs:${var.region}:${local.account_id}:${var.name}-s3-events"
  key_log_groups = [
    "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/ecs/${var.name}/*",
    "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/rds/instance/${var.name}-library/*",
  ]

  # What AWS services need in the key policy itself (service principals cannot be given IAM
  # policies). Each is limited by the encryption context the service sets, to this stack's
  # resources only.
  kms_service_statements = [
    {
      # CloudWatch Logs encrypts the log groups of main.tf and data_services.tf.
      Sid       = "CloudWatchLogs"
      Effect    = "Allow"
      Principal = { Service = "logs.${var.region}.amazonaws.com" }
      Action = [
        "kms:Encrypt*",
        "kms:Decrypt*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:Describe*",
      ]
      Resource  = "*"
      Condition = { ArnLike = { "kms:EncryptionContext:aws:logs:arn" = local.key_log_groups } }
    },
    {
      # S3 sends the bucket's ObjectCreated events to the encrypted event queue (AWS documents
      # these two actions for the s3.amazonaws.com principal); only for that queue.
      Sid       = "S3EventNotifications"
      Effect    = "Allow"
      Principal = { Service = "s3.amazonaws.com" }
      Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
      Resource  = "*"
      Condition = { StringEquals = { "kms:EncryptionContext:aws:sqs:arn" = local.events_queue_arn } }
    },
    {
      # Fargate encrypts the tasks' ephemeral storage (the /tmp and FACEPIPE_HOME volumes, the
      # image layers) of this cluster only (ECS developer guide, Fargate storage key).
      Sid       = "FargateEphemeralStorage"
      Effect    = "Allow"
      Principal = { Service = "fargate.amazonaws.com" }
      Action    = ["kms:GenerateDataKeyWithoutPlaintext"]
      Resource  = "*"
      Condition = {
        StringEquals = {
          "kms:EncryptionContext:aws:ecs:clusterAccount" = local.account_id
          "kms:EncryptionContext:aws:ecs:clusterName"    = var.name
        }
      }
    },
    {
      Sid       = "FargateEphemeralStorageGrants"
      Effect    = "Allow"
      Principal = { Service = "fargate.amazonaws.com" }
      Action    = ["kms:CreateGrant"]
      Resource  = "*"
      Condition = {
        StringEquals = {
          "kms:EncryptionContext:aws:ecs:clusterAccount" = local.account_id
          "kms:EncryptionContext:aws:ecs:clusterName"    = var.name
        }
        "ForAllValues:StringEquals" = { "kms:GrantOperations" = ["Decrypt"] }
      }
    },
  ]
}

resource "aws_kms_key" "main" {
  count                   = var.kms_key_arn == "" ? 1 : 0
  description             = "facepipe ${var.name}: data bucket, event queues, secrets, broker, database, logs, images, task storage"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        # AWS's default key statement, and the only one naming an AWS principal: this account
        # (no other, and no "*"). By itself it lets nobody use the key; it lets IAM policies of
        # this account grant use of it, so every use is an IAM policy that can be read and
        # audited: the ECS roles in iam.tf get kms:Decrypt/GenerateDataKey through S3, SQS or
        # Secrets Manager only, and terraform's own principal manages the key. Without it the
        # key could be locked out of administration for good (KMS refuses such a policy unless
        # told to bypass its lockout check), and Secrets Manager, ElastiCache, RDS and ECR,
        # which use the key on behalf of the calling principal, would need a statement per role.
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*" # in a key policy "*" is this key only
      },
    ], local.kms_service_statements)
  })
}

resource "aws_kms_alias" "main" {
  count         = var.kms_key_arn == "" ? 1 : 0
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main[0].key_id
}

# The GPU instances' root volumes are encrypted with the key (ecs.tf). EC2 Auto Scaling launches
# them as its service-linked role, which gets the key through this grant (AWS's documented way
# for encrypted volumes in Auto Scaling groups). The role has this stack's own suffix, so it is
# created here, before the grant, whatever the account already holds, and removed with the stack.
resource "aws_iam_service_linked_role" "autoscaling" {
  aws_service_name = "autoscaling.amazonaws.com"
  custom_suffix    = var.name
  description      = "EC2 Auto Scaling of the facepipe ${var.name} GPU instances (KMS-encrypted volumes)"
}

resource "aws_kms_grant" "gpu_volumes" {
  name              = "${var.name}-gpu-volumes"
  key_id            = local.kms_key_arn
  grantee_principal = aws_iam_service_linked_role.autoscaling.arn
  operations = [
    "Encrypt",
    "Decrypt",
    "ReEncryptFrom",
    "ReEncryptTo",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "DescribeKey",
    "CreateGrant",
  ]
}
