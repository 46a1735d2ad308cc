variable "name" {
  description = "Name prefix of every resource (letters, digits and hyphens)."
  type        = string
  default     = "facepipe"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# --- network (an existing VPC) --------------------------------------------------------------

variable "vpc_id" {
  description = "VPC to deploy into."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (with a NAT gateway or VPC endpoints for ECR, S3, SQS, Secrets Manager, CloudWatch Logs) for tasks, GPU instances, Redis and Postgres. At least two AZs."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets for the API's load balancer. At least two AZs."
  type        = list(string)
}

variable "api_allowed_cidrs" {
  description = "CIDR blocks allowed to reach the API load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) of the API's HTTPS listener. Required: there is no plain-HTTP mode; port 80 only redirects to 443."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener (TLS 1.3 + 1.2 with forward secrecy by default). Only policies without TLS 1.0/1.1 are accepted."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  # The ELB policy families whose lowest protocol is TLS 1.2 (or 1.3); the TLS13-1-0/1-1,
  # TLS-1-1 and 2016-08 families still speak TLS 1.0 or 1.1.
  validation {
    condition     = can(regex("^ELBSecurityPolicy-(TLS13-1-[23]-|TLS-1-2-|FS-1-2-)", var.ssl_policy))
    error_message = "ssl_policy must be a TLS 1.2+ policy: ELBSecurityPolicy-TLS13-1-2-*, -TLS13-1-3-*, -TLS-1-2-* or -FS-1-2-*."
  }
}

variable "waf_web_acl_arn" {
  description = "Optional WAFv2 web ACL (scope REGIONAL) to associate with the load balancer; empty for none."
  type        = string
  default     = ""

  validation {
    condition     = var.waf_web_acl_arn == "" || can(regex("^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/.+$", var.waf_web_acl_arn))
    error_message = "waf_web_acl_arn must be empty or a REGIONAL WAFv2 web ACL ARN (arn:aws:wafv2:<region>:<account>:regional/webacl/<name>/<id>)."
  }
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer from deletion (turn off before `terraform destroy`)."
  type        = bool
  default     = true
}

# --- object store and events ----------------------------------------------------------------

variable "bucket_name" {
  description = "S3 bucket for sources, snapshots and exports; empty derives one from name and the account id."
  type        = string
  default     = ""
}

variable "kms_key_arn" {
  description = "Existing customer-managed KMS key (its ARN, single-Region) for everything kms.tf lists; empty creates one. An existing key's policy must hold the statements of the kms_key_service_statements output."
  type        = string
  default     = ""

  # A key ARN, not an alias or key id: log groups and Fargate storage accept only the key's ARN.
  validation {
    condition     = var.kms_key_arn == "" || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be empty or a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key id>)."
  }
}

variable "export_prefix" {
  description = "Key prefix under which exports (JSON Lines of matches) are written; objects under it expire after export_retention_days."
  type        = string
  default     = "exports/"
}

variable "export_retention_days" {
  description = "Days an export under export_prefix is kept."
  type        = number
  default     = 30
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version stays restorable in the data bucket (also how long deleted photos linger)."
  type        = number
  default     = 30
}

variable "access_log_retention_days" {
  description = "Days S3 and load balancer access logs are kept in the log bucket."
  type        = number
  default     = 365
}

variable "event_prefixes" {
  description = "Key prefixes whose ObjectCreated events go to the SQS queue (facepipe's key rules map them to actions)."
  type        = list(string)
  default     = ["enroll/", "incoming/"]
}

variable "event_queue_visibility_timeout_s" {
  description = "Visibility timeout of the S3 event queue: longer than s3-listen takes to enqueue a batch."
  type        = number
  default     = 120
}

variable "event_queue_max_receive_count" {
  description = "Receives before an S3 event message moves to the dead-letter queue."
  type        = number
  default     = 5
}

# --- Redis (broker) -------------------------------------------------------------------------

variable "redis_node_type" {
  description = "ElastiCache node type of the Celery broker."
  type        = string
  default     = "cache.t4g.medium"
}

variable "broker_snapshot_retention_days" {
  description = "Days of daily ElastiCache snapshots kept (the broker's last resort if both nodes are lost)."
  type        = number
  default     = 7
}

variable "redis_engine_version" {
  description = "ElastiCache Redis engine version."
  type        = string
  default     = "7.1"
}

# --- Postgres (library) ---------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.r6g.large"
}

variable "db_engine_version" {
  description = "RDS Postgres engine version (16.x ships pgvector >= 0.7)."
  type        = string
  default     = "16.4"
}

variable "db_allocated_storage_gb" {
  description = "Initial RDS storage (GiB); storage autoscaling grows it up to db_max_allocated_storage_gb."
  type        = number
  default     = 100
}

variable "db_max_allocated_storage_gb" {
  description = "Upper bound of RDS storage autoscaling (GiB)."
  type        = number
  default     = 1000
}

variable "db_multi_az" {
  description = "Run RDS in Multi-AZ."
  type        = bool
  default     = true
}

variable "db_deletion_protection" {
  description = "Protect the RDS instance from deletion."
  type        = bool
  default     = true
}

# --- images ---------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the facepipe images pushed to the ECR repositories this stack creates (tags are immutable: one tag per build, e.g. the release or the git commit)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a Docker tag naming one build (not \"latest\": ECR tags are immutable here)."
  }
}

variable "service_image" {
  description = "Full image reference of docker/Dockerfile.service; empty uses this stack's ECR repository and image_tag."
  type        = string
  default     = ""
}

variable "worker_image" {
  description = "Full image reference of docker/Dockerfile.worker (GPU); empty uses this stack's ECR repository and image_tag."
  type        = string
  default     = ""
}

# --- GPU infer workers (ECS on EC2) ---------------------------------------------------------

variable "gpu_instance_types" {
  description = "GPU instance types of the worker fleet (g5 = A10G, g6 = L4), first one preferred."
  type        = list(string)
  default     = ["g5.xlarge", "g6.xlarge"]
}

variable "gpu_asg_min" {
  description = "Fewest GPU instances (0 lets the fleet scale to zero when queues are empty)."
  type        = number
  default     = 0
}

variable "gpu_asg_max" {
  description = "Most GPU instances."
  type        = number
  default     = 8
}

variable "gpu_root_volume_gb" {
  description = "Root volume of each GPU instance (the worker image is several GB)."
  type        = number
  default     = 100
}

variable "infer_task_cpu" {
  description = "CPU units of one GPU worker task (1024 = 1 vCPU)."
  type        = number
  default     = 3072
}

variable "infer_task_memory" {
  description = "Memory (MiB) of one GPU worker task."
  type        = number
  default     = 14336
}

variable "infer_min_tasks" {
  description = "Fewest GPU worker tasks."
  type        = number
  default     = 0
}

variable "infer_max_tasks" {
  description = "Most GPU worker tasks (one GPU each)."
  type        = number
  default     = 8
}

variable "infer_concurrency" {
  description = "Celery processes per GPU worker task (each loads the models once)."
  type        = number
  default     = 2
}

variable "scale_out_queue_depth" {
  description = "Messages waiting on the infer queue at which one more GPU worker starts; 4x this adds two, 16x adds four."
  type        = number
  default     = 50
}

variable "scale_in_idle_minutes" {
  description = "Minutes the infer queue must stay empty before the GPU workers scale in to infer_min_tasks."
  type        = number
  default     = 15
}

variable "queue_metrics_interval_s" {
  description = "How often the queue-depth publisher puts QueueDepth to CloudWatch."
  type        = number
  default     = 30
}

# --- CPU services (Fargate) -----------------------------------------------------------------

variable "api_desired_count" {
  description = "API tasks."
  type        = number
  default     = 2
}

variable "api_cpu" {
  description = "CPU units of one API task."
  type        = number
  default     = 2048
}

variable "api_memory" {
  description = "Memory (MiB) of one API task (it loads the models for online calls)."
  type        = number
  default     = 4096
}

variable "ingest_desired_count" {
  description = "Ingest worker tasks (listing sources, fanning out chunks)."
  type        = number
  default     = 1
}

variable "ingest_cpu" {
  description = "CPU units of one ingest worker task."
  type        = number
  default     = 1024
}

variable "ingest_memory" {
  description = "Memory (MiB) of one ingest worker task."
  type        = number
  default     = 2048
}

variable "match_threshold" {
  description = "FACEPIPE_MATCH_THRESHOLD: confidence (Tencent 3.0 scale, 0-100) at or above which verify/compare call it a match; 50 = false accept rate 1e-4 per comparison."
  type        = number
  default     = 50
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the container logs (a value CloudWatch accepts)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch Logs' retention values (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "extra_environment" {
  description = "More FACEPIPE_* settings for every container (name => value)."
  type        = map(string)
  default     = {}
}
