"""vllm-gitops: render, validate and size vLLM deployments on EKS, statically."""
