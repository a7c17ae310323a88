"""Policy backends: `hf` (transformers, CPU or GPU) and, later, `vllm` (GPU)."""
