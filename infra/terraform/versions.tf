terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }

  # Configure a remote state backend for real deployments, e.g.:
  # backend "s3" {
  #   bucket         = "my-terraform-state"
  #   key            = "facepipe/terraform.tfstate"
  #   region         = "eu-west-1"
  #   dynamodb_table = "terraform-locks"
  #   encrypt        = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project = "facepipe"
      Stack   = var.name
    })
  }
}
