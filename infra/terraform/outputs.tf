output "api_lb_dns_name" {
  description = "DNS name of the API's load balancer: point the certificate's host name at it (Route 53 alias or CNAME)."
  value       = aws_lb.api.dns_name
}

output "kms_key_arn" {
  description = "The customer-managed KMS key encrypting the bucket, event queues, secrets, broker, database, logs, images and task storage."
  value       = local.kms_key_arn
}

output "kms_key_service_statements" {
  description = "The key-policy statements the AWS services need (kms.tf); add them to an existing key's policy when kms_key_arn is set."
  value       = jsonencode(local.kms_service_statements)
}

output "logs_bucket_name" {
  description = "Bucket holding the data bucket's S3 access logs (s3/) and the load balancer's access logs (alb/)."
  value       = aws_s3_bucket.logs.bucket
}

output "bucket_name" {
  description = "The data bucket (upload under enroll/<group>/<person>/ or incoming/ to trigger processing)."
  value       = aws_s3_bucket.data.bucket
}

output "events_queue_url" {
  description = "SQS queue receiving the bucket's ObjectCreated events (s3-listen --queue-url)."
  value       = aws_sqs_queue.events.url
}

output "events_dlq_url" {
  description = "Dead-letter queue of the event queue."
  value       = aws_sqs_queue.events_dlq.url
}

output "redis_endpoint" {
  description = "Primary endpoint of the Celery broker."
  value       = local.redis_host
}

output "db_endpoint" {
  description = "RDS Postgres endpoint."
  value       = aws_db_instance.library.address
}

output "broker_secret_arn" {
  description = "Secrets Manager secret holding the broker URLs (JSON keys broker_url, result_backend)."
  value       = aws_secretsmanager_secret.broker.arn
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding FACEPIPE_DATABASE_URL."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "ecr_service_repository" {
  description = "Push docker/Dockerfile.service here."
  value       = aws_ecr_repository.service.repository_url
}

output "ecr_worker_repository" {
  description = "Push docker/Dockerfile.worker here."
  value       = aws_ecr_repository.worker.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.main.name
}

output "migrate_command" {
  description = "Runs the database migrations once (also applied by every process on start)."
  value = join(" ", [
    "aws ecs run-task --region", var.region,
    "--cluster", aws_ecs_cluster.main.name,
    "--launch-type FARGATE",
    "--task-definition", aws_ecs_task_definition.migrate.family,
    "--network-configuration",
    "'awsvpcConfiguration={subnets=[${join(",", var.private_subnet_ids)}],securityGroups=[${aws_security_group.tasks.id}]}'",
  ])
}
