# GPU infer workers scale on the depth of the Celery `infer` queue. facepipe's queue-metrics
# container (in the beat task) reads the Redis list lengths and publishes them every
# queue_metrics_interval_s as namespace "facepipe", metric "QueueDepth", dimension Queue=<name>
# (plus Queue=unacked: messages delivered to a worker and not yet acknowledged). Application
# Auto Scaling changes the service's task count; pending GPU tasks make the capacity provider
# grow the Auto Scaling group, and empty instances are drained and removed.

resource "aws_appautoscaling_target" "infer" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.infer.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.infer_min_tasks
  max_capacity       = var.infer_max_tasks
}

# Steps are relative to the alarm threshold T = scale_out_queue_depth:
# depth in [T, 4T) adds one task, [4T, 16T) two, 16T and more four.
resource "aws_appautoscaling_policy" "infer_out" {
  name               = "${var.name}-infer-scale-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.infer.service_namespace
  resource_id        = aws_appautoscaling_target.infer.resource_id
  scalable_dimension = aws_appautoscaling_target.infer.scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 180
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 3 * var.scale_out_queue_depth
      scaling_adjustment          = 1
    }

    step_adjustment {
      metric_interval_lower_bound = 3 * var.scale_out_queue_depth
      metric_interval_upper_bound = 15 * var.scale_out_queue_depth
      scaling_adjustment          = 2
    }

    step_adjustment {
      metric_interval_lower_bound = 15 * var.scale_out_queue_depth
      scaling_adjustment          = 4
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "infer_backlog" {
  alarm_name          = "${var.name}-infer-backlog"
  alarm_description   = "Images waiting on the infer queue: add GPU workers."
  namespace           = "facepipe"
  metric_name         = "QueueDepth"
  dimensions          = { Queue = "infer" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = var.scale_out_queue_depth
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.infer_out.arn]
}

# Back to infer_min_tasks once nothing waits and nothing is in flight for scale_in_idle_minutes.
resource "aws_appautoscaling_policy" "infer_in" {
  name               = "${var.name}-infer-scale-in"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.infer.service_namespace
  resource_id        = aws_appautoscaling_target.infer.resource_id
  scalable_dimension = aws_appautoscaling_target.infer.scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = 300
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = var.infer_min_tasks
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "infer_idle" {
  alarm_name          = "${var.name}-infer-idle"
  alarm_description   = "Nothing waiting on infer and nothing in flight: scale GPU workers in."
  evaluation_periods  = var.scale_in_idle_minutes
  threshold           = 0
  comparison_operator = "LessThanOrEqualToThreshold"
  # A silent publisher must not look like an idle queue.
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_appautoscaling_policy.infer_in.arn]

  metric_query {
    id          = "work"
    expression  = "waiting + inflight"
    label       = "infer waiting + unacked"
    return_data = true
  }

  metric_query {
    id = "waiting"

    metric {
      namespace   = "facepipe"
      metric_name = "QueueDepth"
      dimensions  = { Queue = "infer" }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id = "inflight"

    metric {
      namespace   = "facepipe"
      metric_name = "QueueDepth"
      dimensions  = { Queue = "unacked" }
      stat        = "Maximum"
      period      = 60
    }
  }
}
