# The data bucket (sources under enroll/ and incoming/, FAISS snapshots, exports) and the S3 ->
# SQS event path that s3-listen long-polls.

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is off on purpose: a second copy of biometric data in another region is a data-residency decision for the operator, and versioning (above) already covers deletes and overwrites. Add an aws_s3_bucket_replication_configuration if the DR plan needs it.
  bucket = local.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioning keeps what an overwrite or delete replaced (a wrong upload, a bad snapshot, a
# compromised credential deleting objects) for noncurrent_version_days, then the lifecycle rule
# below removes it: that bound is also how long a deleted photo can still be restored.
resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-KMS with the customer-managed key (kms.tf); the bucket key cuts KMS requests per object.
resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

# Every request on the data bucket is logged to the log bucket (who read which photo, when).
resource "aws_s3_bucket_logging" "data" {
  bucket        = aws_s3_bucket.data.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3/${aws_s3_bucket.data.bucket}/"

  depends_on = [aws_s3_bucket_policy.logs]
}

# Exports (JSON Lines of matches) written under export_prefix expire after export_retention_days;
# replaced or deleted versions of any object after noncurrent_version_days; interrupted
# multipart uploads (archive uploads) after a week.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "expire-exports"
    status = "Enabled"

    filter {
      prefix = var.export_prefix
    }

    expiration {
      days = var.export_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.data.arn,
      "${aws_s3_bucket.data.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# The event messages name the uploaded objects (enroll/<group>/<person>/...: names of people), so
# both queues are encrypted with the facepipe key; S3 may use it for the event queue only
# (kms.tf), s3-listen reads through SQS (iam.tf).
resource "aws_sqs_queue" "events_dlq" {
  name                      = "${var.name}-s3-events-dlq"
  message_retention_seconds = 1209600
  kms_master_key_id         = local.kms_key_arn
}

resource "aws_sqs_queue" "events" {
  name                       = "${var.name}-s3-events"
  visibility_timeout_seconds = var.event_queue_visibility_timeout_s
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  kms_master_key_id          = local.kms_key_arn # its name is in local.events_queue_arn (kms.tf)

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dlq.arn
    maxReceiveCount     = var.event_queue_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "events_dlq" {
  queue_url = aws_sqs_queue.events_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

# Only this bucket (in this account) may send its event notifications to the queue.
data "aws_iam_policy_document" "events_queue" {
  statement {
    sid       = "AllowBucketNotifications"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.data.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.events_queue.json
}

resource "aws_s3_bucket_notification" "data" {
  bucket = aws_s3_bucket.data.id

  dynamic "queue" {
    for_each = toset(var.event_prefixes)
    content {
      id            = "facepipe-${replace(trimsuffix(queue.value, "/"), "/", "-")}"
      queue_arn     = aws_sqs_queue.events.arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = queue.value
    }
  }

  # S3 checks that it may send to the queue when the notification is created.
  depends_on = [aws_sqs_queue_policy.events]
}
