# The Celery broker (ElastiCache Redis) and the library (RDS Postgres 16 with pgvector).
#
# pgvector is an extension available on RDS for PostgreSQL 16; facepipe's first migration runs
# `CREATE EXTENSION IF NOT EXISTS vector`, which the master user (rds_superuser) may do, so no
# extra step is needed here.

resource "aws_elasticache_subnet_group" "broker" {
  name       = "${var.name}-broker"
  subnet_ids = var.private_subnet_ids
}

resource "aws_elasticache_parameter_group" "broker" {
  name   = "${var.name}-broker"
  family = "redis7"

  # Celery's queues are Redis lists: never evict them under memory pressure.
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

# Broker durability (what survives what). ElastiCache Redis OSS has no append-only file on this
# engine: AWS documents AOF as unsupported from Redis 2.8.22 on and disabled on Multi-AZ
# replication groups, so the compose file's `appendonly yes` has no equivalent here. Instead:
# - a node or AZ failure: the replica in the other AZ is promoted (Multi-AZ, automatic failover,
#   typically under a minute). Replication is asynchronous, so messages written to the old
#   primary in the last moment before it failed can be lost;
# - a reboot or replacement of a single node: it resynchronises from the other node;
# - losing both nodes (or deleting the group): only the daily snapshot is left
#   (broker_snapshot_retention_days, taken in the snapshot window), i.e. up to a day old.
# A lost message is a chunk the job never finishes; recovering those is the pipeline's part
# (job state lives in Postgres). For a broker that acknowledges writes only once they are
# durable in several AZs, Amazon MemoryDB is the Redis-compatible alternative (not wired here).
resource "aws_elasticache_replication_group" "broker" {
  replication_group_id       = "${var.name}-broker"
  description                = "facepipe Celery broker and result backend"
  engine                     = "redis"
  engine_version             = var.redis_engine_version
  node_type                  = var.redis_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = 6379
  parameter_group_name       = aws_elasticache_parameter_group.broker.name
  subnet_group_name          = aws_elasticache_subnet_group.broker.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = local.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  snapshot_retention_limit   = var.broker_snapshot_retention_days
  snapshot_window            = "03:00-04:00"
  auto_minor_version_upgrade = true
}

# Redis AUTH (needs in-transit encryption); the broker URLs holding it live in Secrets Manager.
resource "random_password" "redis" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "broker" {
  #checkov:skip=CKV2_AWS_57:Rotation is a terraform operation here, not a Lambda: the value is the ElastiCache AUTH token inside two URLs, and rotating it means changing the token on the replication group and restarting every task, which `terraform apply -replace=random_password.redis` does in one step (docs/deployment.md). A rotation Lambda would have to re-implement that.
  kms_key_id              = local.kms_key_arn
  name                    = "${var.name}/broker"
  description             = "FACEPIPE_BROKER_URL and FACEPIPE_RESULT_BACKEND of facepipe (JSON keys)"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "broker" {
  secret_id = aws_secretsmanager_secret.broker.id
  secret_string = jsonencode({
    broker_url     = "rediss://:${random_password.redis.result}@${local.redis_host}:6379/0?ssl_cert_reqs=required"
    result_backend = "rediss://:${random_password.redis.result}@${local.redis_host}:6379/1?ssl_cert_reqs=required"
  })
}

resource "random_password" "db" {
  length  = 40
  special = false
}

resource "aws_db_subnet_group" "library" {
  name       = "${var.name}-library"
  subnet_ids = var.private_subnet_ids
}

resource "aws_db_parameter_group" "library" {
  name   = "${var.name}-library-pg16"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Slow statements and schema changes are logged (CloudWatch Logs, postgresql export below), but
  # never the values bound to them: those are embeddings, person ids and names.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_parameter_max_length"
    value = "0"
  }

  parameter {
    name  = "log_parameter_max_length_on_error"
    value = "0"
  }

  # HNSW index builds over millions of 512-d vectors want memory.
  parameter {
    name  = "maintenance_work_mem"
    value = "2097152"
  }
}

# The database's exported logs (enabled_cloudwatch_logs_exports below). RDS would create these
# groups itself on first export, kept forever and on an AWS-owned key; created here first, they
# get the stated retention and the facepipe key like the container logs (main.tf).
locals {
  db_log_exports = ["postgresql", "upgrade"]
}

resource "aws_cloudwatch_log_group" "library" {
  for_each          = toset(local.db_log_exports)
  name              = "/aws/rds/instance/${var.name}-library/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

resource "aws_db_instance" "library" {
  identifier                            = "${var.name}-library"
  engine                                = "postgres"
  engine_version                        = var.db_engine_version
  instance_class                        = var.db_instance_class
  allocated_storage                     = var.db_allocated_storage_gb
  max_allocated_storage                 = var.db_max_allocated_storage_gb
  storage_type                          = "gp3"
  storage_encrypted                     = true
  kms_key_id                            = local.kms_key_arn
  db_name                               = "facepipe"
  username                              = "facepipe"
  password                              = random_password.db.result
  port                                  = 5432
  multi_az                              = var.db_multi_az
  db_subnet_group_name                  = aws_db_subnet_group.library.name
  parameter_group_name                  = aws_db_parameter_group.library.name
  vpc_security_group_ids                = [aws_security_group.db.id]
  publicly_accessible                   = false
  backup_retention_period               = 7
  deletion_protection                   = var.db_deletion_protection
  skip_final_snapshot                   = false
  final_snapshot_identifier             = "${var.name}-library-final"
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = local.kms_key_arn
  performance_insights_retention_period = 7
  # Operators and DBAs may log in with short-lived IAM tokens (rds-db:connect) instead of a
  # shared password; facepipe itself keeps using the URL from Secrets Manager.
  iam_database_authentication_enabled = true
  # OS-level metrics (per-process CPU, memory, I/O) every 60 s, in CloudWatch Logs RDSOSMetrics.
  monitoring_interval   = 60
  monitoring_role_arn   = aws_iam_role.rds_monitoring.arn
  copy_tags_to_snapshot = true
  # Postgres and upgrade logs in CloudWatch Logs, in the groups above.
  enabled_cloudwatch_logs_exports = local.db_log_exports
  auto_minor_version_upgrade      = true
  apply_immediately               = false

  depends_on = [aws_cloudwatch_log_group.library]
}

# The whole connection URL is the secret: facepipe reads one FACEPIPE_DATABASE_URL.
resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:Rotation is a terraform operation here (`terraform apply -replace=random_password.db`, docs/deployment.md): the secret is a whole connection URL that facepipe reads at start, so a rotation Lambda changing only the password would leave running tasks with a dead URL until restarted anyway.
  kms_key_id              = local.kms_key_arn
  name                    = "${var.name}/database-url"
  description             = "FACEPIPE_DATABASE_URL of the facepipe library database"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "postgresql://facepipe:${random_password.db.result}@${aws_db_instance.library.address}:${aws_db_instance.library.port}/facepipe?sslmode=require"
}
