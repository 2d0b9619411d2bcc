"""The rollout container: vLLM rollout backends (CPU build, GPU with sleep mode) and its server.

Importing the package registers both backends; vLLM itself is imported only when one is built.
"""
from seesaw.rollout import cpu_backend, gpu_backend  # noqa: F401
