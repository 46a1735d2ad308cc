# Task definitions and services. Every container runs the `facepipe` entry point of its image
# with a sub-command; settings come from local.environment, the database URL from Secrets Manager.

locals {
  log_options = {
    for k, g in aws_cloudwatch_log_group.service : k => {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = g.name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = k
      }
    }
  }

  # Celery workers finish their current chunk on SIGTERM; ECS waits this long before SIGKILL.
  worker_stop_timeout_s = 120

  # Root file systems are read-only; the only writable paths are the two the images declare as
  # VOLUME (docker/Dockerfile.*): FACEPIPE_HOME (beat schedule, local snapshots/exports, caches
  # under $HOME) and /tmp. Each is a task-scoped bind mount (Fargate: task ephemeral storage;
  # EC2: a Docker volume), empty at task start and removed with the task. ECS copies the image's
  # owner and mode of these paths, so the non-root user 10001 can write them.
  writable_paths = {
    home = "/var/lib/facepipe"
    tmp  = "/tmp"
  }
  mount_points = [for name in sort(keys(local.writable_paths)) : {
    sourceVolume  = name
    containerPath = local.writable_paths[name]
    readOnly      = false
  }]

  # The images' health check (docker/healthcheck.py): /healthz for the API, a Celery ping for
  # workers, process liveness for the rest. ECS replaces a task whose essential container turns
  # unhealthy.
  health_check = {
    command     = ["CMD", "facepipe-healthcheck"]
    interval    = 30
    timeout     = 15
    retries     = 3
    startPeriod = 180
  }
}

# --- API (Fargate, behind the load balancer) ------------------------------------------------

resource "aws_ecs_task_definition" "api" {
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.api_cpu
  memory                   = var.api_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.app.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "volume" {
    for_each = local.writable_paths
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode([{
    name                   = "api"
    image                  = local.service_image
    essential              = true
    command                = ["api", "--host", "0.0.0.0", "--port", "8000"]
    environment            = local.environment
    secrets                = local.secrets
    portMappings           = [{ containerPort = 8000, protocol = "tcp" }]
    readonlyRootFilesystem = true
    mountPoints            = local.mount_points
    healthCheck            = local.health_check
    logConfiguration       = local.log_options["api"]
  }])
}

resource "aws_ecs_service" "api" {
  name                              = "api"
  cluster                           = aws_ecs_cluster.main.id
  task_definition                   = aws_ecs_task_definition.api.arn
  desired_count                     = var.api_desired_count
  launch_type                       = "FARGATE"
  health_check_grace_period_seconds = 120

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = "api"
    container_port   = 8000
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.https]
}

# --- ingest worker (Fargate): lists sources, fans out chunks --------------------------------

resource "aws_ecs_task_definition" "ingest" {
  family                   = "${var.name}-ingest"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.ingest_cpu
  memory                   = var.ingest_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.app.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "volume" {
    for_each = local.writable_paths
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode([{
    name                   = "ingest"
    image                  = local.service_image
    essential              = true
    command                = ["worker", "--queues", "ingest"]
    environment            = local.environment
    secrets                = local.secrets
    stopTimeout            = local.worker_stop_timeout_s
    readonlyRootFilesystem = true
    mountPoints            = local.mount_points
    healthCheck            = local.health_check
    logConfiguration       = local.log_options["ingest"]
  }])
}

resource "aws_ecs_service" "ingest" {
  name            = "worker-ingest"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.ingest.arn
  desired_count   = var.ingest_desired_count
  launch_type     = "FARGATE"

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }
}

# --- beat + queue-depth publisher (Fargate, exactly one task) -------------------------------

resource "aws_ecs_task_definition" "beat" {
  family                   = "${var.name}-beat"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.scheduler.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "volume" {
    for_each = local.writable_paths
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode([
    {
      name                   = "beat"
      image                  = local.service_image
      essential              = true
      command                = ["beat"]
      environment            = local.environment
      secrets                = local.secrets
      readonlyRootFilesystem = true
      mountPoints            = local.mount_points
      healthCheck            = local.health_check
      logConfiguration       = local.log_options["beat"]
    },
    {
      # Publishes facepipe/QueueDepth{Queue=...} that the GPU worker autoscaling follows.
      name                   = "queue-metrics"
      image                  = local.service_image
      essential              = true
      command                = ["queue-metrics", "--interval", tostring(var.queue_metrics_interval_s)]
      environment            = local.environment
      secrets                = local.broker_secrets
      readonlyRootFilesystem = true
      mountPoints            = local.mount_points
      healthCheck            = local.health_check
      logConfiguration       = local.log_options["queue-metrics"]
    },
  ])
}

resource "aws_ecs_service" "beat" {
  name            = "beat"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.beat.arn
  desired_count   = 1
  launch_type     = "FARGATE"

  # Never two beats at once, even during a deployment (facepipe also takes a lock).
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }
}

# --- s3-listen (Fargate): SQS S3 events -> job items ----------------------------------------

resource "aws_ecs_task_definition" "s3_listen" {
  family                   = "${var.name}-s3-listen"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.listener.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "volume" {
    for_each = local.writable_paths
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode([{
    name                   = "s3-listen"
    image                  = local.service_image
    essential              = true
    command                = ["s3-listen", "--queue-url", aws_sqs_queue.events.url]
    environment            = local.environment
    secrets                = local.secrets
    readonlyRootFilesystem = true
    mountPoints            = local.mount_points
    healthCheck            = local.health_check
    logConfiguration       = local.log_options["s3-listen"]
  }])
}

resource "aws_ecs_service" "s3_listen" {
  name            = "s3-listen"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.s3_listen.arn
  desired_count   = 1
  launch_type     = "FARGATE"

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }
}

# --- migrations (one-off: aws ecs run-task, see outputs.migrate_command) ---------------------

resource "aws_ecs_task_definition" "migrate" {
  family                   = "${var.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn


  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "volume" {
    for_each = local.writable_paths
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode([{
    name                   = "migrate"
    image                  = local.service_image
    essential              = true
    command                = ["db", "upgrade"]
    environment            = local.environment
    secrets                = local.secrets
    readonlyRootFilesystem = true
    mountPoints            = local.mount_points
    logConfiguration       = local.log_options["migrate"]
  }])
}

# --- infer workers (ECS on the GPU capacity provider) ---------------------------------------

resource "aws_ecs_task_definition" "infer" {
  family                   = "${var.name}-infer"
  requires_compatibilities = ["EC2"]
  network_mode             = "awsvpc"
  cpu                      = var.infer_task_cpu
  memory                   = var.infer_task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.app.arn

  dynamic "volume" {
    for_each = local.writable_paths
    content {
      name = volume.key
    }
  }

  container_definitions = jsonencode([{
    name      = "infer"
    image     = local.worker_image
    essential = true
    command = [
      "worker", "--queues", "infer,index,search",
      "--concurrency", tostring(var.infer_concurrency),
    ]
    environment            = local.environment
    secrets                = local.secrets
    resourceRequirements   = [{ type = "GPU", value = "1" }]
    stopTimeout            = local.worker_stop_timeout_s
    readonlyRootFilesystem = true
    mountPoints            = local.mount_points
    healthCheck            = local.health_check
    logConfiguration       = local.log_options["infer"]
  }])
}

resource "aws_ecs_service" "infer" {
  name            = "worker-infer"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.infer.arn
  desired_count   = var.infer_min_tasks

  capacity_provider_strategy {
    capacity_provider = aws_ecs_capacity_provider.gpu.name
    weight            = 1
  }

  network_configuration {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.tasks.id]
  }

  ordered_placement_strategy {
    type  = "binpack"
    field = "memory"
  }

  lifecycle {
    # Application Auto Scaling owns the desired count (autoscaling.tf).
    ignore_changes = [desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.main]
}
