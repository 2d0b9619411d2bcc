"""The trainer container: trainer backends (plain PyTorch on CPU, Megatron-core on GPU) and its server.

Importing the package registers both backends; neither imports its engine until it is built.
"""
from seesaw.trainer import megatron_backend, torch_backend  # noqa: F401
