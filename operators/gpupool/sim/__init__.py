"""A simulator that replays job traces through the GPU pool planner and two baselines.

Seeded and deterministic apart from the measured decision times; used by
``python -m benchmarks.gpupool`` and the simulator tests. May import ``core/`` and the plan
executor of ``clients/`` (never ``kubernetes`` or ``kopf``: it runs without a cluster).
"""
