"""Weight channels: how new weights travel from the trainer to the rollout engine.

Importing the package registers every channel (Mooncake TCP and RDMA, CUDA IPC).
"""
from seesaw.checkpoint_engine.channels import cuda_ipc, mooncake, mooncake_rdma  # noqa: F401
