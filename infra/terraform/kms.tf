# One customer-managed KMS key for everything facepipe keeps at rest: the data bucket (photos,
# FAISS snapshots, exports), the Secrets Manager secrets, the ElastiCache broker, the RDS library
# (storage and Performance Insights), the CloudWatch log groups and the ECR repositories.
# The operator controls (and can audit, disable or schedule for deletion) the key that unlocks the
# biometric data. Set var.kms_key_arn to use an existing key instead; its policy must then allow
# what the "CloudWatchLogs" statement below allows (CloudWatch Logs cannot use a key otherwise).
#
# Services other than CloudWatch Logs use the key on behalf of the IAM principal that calls them
# (terraform when creating resources, the ECS roles in iam.tf when reading), which the
# "AccountAdministration" statement delegates to IAM policies of this account.

locals {
  kms_key_arn = var.kms_key_arn != "" ? var.kms_key_arn : aws_kms_key.main[0].arn
}

resource "aws_kms_key" "main" {
  count                   = var.kms_key_arn == "" ? 1 : 0
  description             = "facepipe ${var.name}: data bucket, secrets, broker, database, logs, images"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*" # in a key policy "*" is this key only
      },
      {
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
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/ecs/${var.name}/*"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  count         = var.kms_key_arn == "" ? 1 : 0
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main[0].key_id
}
