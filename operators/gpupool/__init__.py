"""GPUNodePool: scale GPU node pools for whole PyTorchJobs (gang demand)."""
