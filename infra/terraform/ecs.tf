# The ECS cluster: Fargate for the CPU services, an Auto Scaling group of GPU instances (ECS
# GPU-optimised AMI) behind a capacity provider for the infer workers.

resource "aws_ecs_cluster" "main" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  # Fargate tasks' ephemeral storage (image layers, the /tmp and FACEPIPE_HOME volumes, where
  # photos pass through) encrypted with the facepipe key instead of an AWS-owned one (kms.tf's
  # Fargate statements). It applies to tasks started after the change.
  configuration {
    managed_storage_configuration {
      fargate_ephemeral_storage_kms_key_id = local.kms_key_arn
    }
  }
}

# Amazon Linux 2 ECS GPU-optimised AMI: NVIDIA driver and the container toolkit preinstalled.
data "aws_ssm_parameter" "ecs_gpu_ami" {
  name = "/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/recommended/image_id"
}

resource "aws_launch_template" "gpu" {
  name_prefix            = "${var.name}-gpu-"
  image_id               = data.aws_ssm_parameter.ecs_gpu_ami.value
  instance_type          = var.gpu_instance_types[0]
  vpc_security_group_ids = [aws_security_group.gpu_instances.id]

  iam_instance_profile {
    arn = aws_iam_instance_profile.gpu_instance.arn
  }

  # IMDSv2 only, and out of reach of containers (awsvpc tasks get their role from the agent).
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.gpu_root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = local.kms_key_arn # the Auto Scaling role's grant: kms.tf
      delete_on_termination = true
    }
  }

  user_data = base64encode(<<-EOT
    #!/bin/bash
    cat >> /etc/ecs/ecs.config <<CONFIG
    ECS_CLUSTER=${aws_ecs_cluster.main.name}
    ECS_ENABLE_GPU_SUPPORT=true
    ECS_ENABLE_TASK_IAM_ROLE=true
    ECS_AWSVPC_BLOCK_IMDS=true
    ECS_IMAGE_PULL_BEHAVIOR=prefer-cached
    CONFIG
  EOT
  )

  tag_specifications {
    resource_type = "instance"
    tags = {
      Name = "${var.name}-gpu-worker"
    }
  }
}

resource "aws_autoscaling_group" "gpu" {
  name_prefix           = "${var.name}-gpu-"
  min_size              = var.gpu_asg_min
  max_size              = var.gpu_asg_max
  vpc_zone_identifier   = var.private_subnet_ids
  protect_from_scale_in = true # the capacity provider decides which instances may go
  health_check_type     = "EC2"
  # Launches as the role that holds the grant on the key of the encrypted root volumes.
  service_linked_role_arn = aws_iam_service_linked_role.autoscaling.arn

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = 100
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.gpu.id
        version            = "$Latest"
      }

      dynamic "override" {
        for_each = var.gpu_instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  lifecycle {
    # The capacity provider's managed scaling owns the desired count.
    ignore_changes = [desired_capacity]
  }

  depends_on = [aws_kms_grant.gpu_volumes]
}

resource "aws_ecs_capacity_provider" "gpu" {
  name = "${var.name}-gpu"

  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.gpu.arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"

    managed_scaling {
      status                    = "ENABLED"
      target_capacity           = 100
      minimum_scaling_step_size = 1
      maximum_scaling_step_size = 4
      instance_warmup_period    = 300
    }
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT", aws_ecs_capacity_provider.gpu.name]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}
