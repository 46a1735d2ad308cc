"""What operators see: Prometheus metrics (metrics, http, exporter), structured logs (logging),
queue depths (queues) and the CloudWatch autoscaling metric (cloudwatch)."""
