# Public entry point of the HTTP API: HTTPS only (TLS 1.2+), port 80 answers with a redirect.
# TLS ends at the load balancer; the hop to the tasks stays in the private subnets (see the
# target group).

resource "aws_lb" "api" {
  #checkov:skip=CKV2_AWS_76:The web ACL is the operator's (waf_web_acl_arn, optional), so its rules are not in this stack for checkov to read; docs/deployment.md asks for AWSManagedRulesKnownBadInputsRuleSet (the Log4j rules) in it. facepipe runs no Java.
  name                       = "${var.name}-api"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  idle_timeout               = 120
  enable_deletion_protection = var.alb_deletion_protection

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:The target group speaks HTTP to the API tasks on purpose: TLS ends at the load balancer, the tasks sit in private subnets, and their security group accepts port 8000 from the load balancer's group only. The API process (uvicorn) serves no TLS itself.
  name        = "${var.name}-api"
  port        = 8000
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  deregistration_delay = 30
}

# Plain HTTP never reaches the API: it is answered with a permanent redirect to HTTPS.
resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.api.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}

# Optional: a WAFv2 web ACL the operator manages (rate limits, managed rule groups).
resource "aws_wafv2_web_acl_association" "api" {
  count        = var.waf_web_acl_arn != "" ? 1 : 0
  resource_arn = aws_lb.api.arn
  web_acl_arn  = var.waf_web_acl_arn
}
