# Security groups: the load balancer faces the allowed CIDRs; tasks accept the API port from it
# only; Redis and Postgres accept connections from the tasks only.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "facepipe API load balancer"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:Port 80 is open to api_allowed_cidrs (the internet by default) only to answer with a 301 to HTTPS (alb.tf); no request is forwarded on it.
  description       = "HTTP to the API load balancer (redirected to HTTPS)"
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = each.value
  from_port         = 80
  to_port           = 80
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  description       = "HTTPS to the API load balancer"
  for_each          = toset(var.api_allowed_cidrs)
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = each.value
  from_port         = 443
  to_port           = 443
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  description                  = "load balancer to the API tasks"
  security_group_id            = aws_security_group.alb.id
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = 8000
  to_port                      = 8000
  ip_protocol                  = "tcp"
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "facepipe ECS tasks (API, workers, beat, s3-listen)"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  description                  = "API port from the load balancer"
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.alb.id
  from_port                    = 8000
  to_port                      = 8000
  ip_protocol                  = "tcp"
}

# Tasks reach AWS APIs (S3, SQS, ECR, Secrets Manager, CloudWatch) and image URLs over HTTPS,
# image URLs over HTTP, and Redis and Postgres in their security groups; nothing else. (DNS to
# the VPC resolver is not filtered by security groups.)
resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  #checkov:skip=CKV_AWS_382:Egress to 0.0.0.0/0 is limited to TCP 443: the AWS APIs (without VPC endpoints) and the HTTPS image URLs callers give the API have no fixed addresses.
  description       = "AWS APIs and HTTPS image URLs"
  security_group_id = aws_security_group.tasks.id
  cidr_ipv4         = "0.0.0.0/0"
  from_port         = 443
  to_port           = 443
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "tasks_http" {
  #checkov:skip=CKV_AWS_382:Egress to 0.0.0.0/0 is limited to TCP 80 for plain-HTTP image URLs callers give the API (the URL fetcher refuses private and metadata addresses itself).
  description       = "HTTP image URLs"
  security_group_id = aws_security_group.tasks.id
  cidr_ipv4         = "0.0.0.0/0"
  from_port         = 80
  to_port           = 80
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_redis" {
  description                  = "Celery broker"
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.redis.id
  from_port                    = 6379
  to_port                      = 6379
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_db" {
  description                  = "Postgres library"
  security_group_id            = aws_security_group.tasks.id
  referenced_security_group_id = aws_security_group.db.id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}

resource "aws_security_group" "gpu_instances" {
  name        = "${var.name}-gpu-instances"
  description = "facepipe GPU container instances (tasks use awsvpc and the tasks group)"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "gpu_instances_https" {
  #checkov:skip=CKV_AWS_382:Egress to 0.0.0.0/0 is limited to TCP 443: the ECS agent, ECR, S3 and SSM endpoints have no fixed addresses (use VPC endpoints to remove this rule).
  description       = "ECS agent, ECR, S3 and SSM over HTTPS"
  security_group_id = aws_security_group.gpu_instances.id
  cidr_ipv4         = "0.0.0.0/0"
  from_port         = 443
  to_port           = 443
  ip_protocol       = "tcp"
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "facepipe Celery broker"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  description                  = "Celery broker from the tasks"
  security_group_id            = aws_security_group.redis.id
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = 6379
  to_port                      = 6379
  ip_protocol                  = "tcp"
}

resource "aws_security_group" "db" {
  name        = "${var.name}-db"
  description = "facepipe Postgres"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "db_from_tasks" {
  description                  = "Postgres from the tasks"
  security_group_id            = aws_security_group.db.id
  referenced_security_group_id = aws_security_group.tasks.id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}
