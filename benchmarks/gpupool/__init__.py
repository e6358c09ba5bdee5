"""GPU pool simulator benchmark: `python -m benchmarks.gpupool` (see README.md)."""
