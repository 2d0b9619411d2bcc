"""What the operator (or `seesaw run`) tells a pod's containers: environment variables and
ports, defined once and imported by both sides."""
from __future__ import annotations

# --- environment variables ------------------------------------------------------------------
JOB_CONFIG = "SEESAW_JOB_CONFIG"          # path of the resolved RLJob manifest
JOB_NAME = "SEESAW_JOB_NAME"
NAMESPACE = "SEESAW_NAMESPACE"
POD_INDEX = "SEESAW_POD_INDEX"            # 0 conducts the gang; the others follow it
ROLLOUT_REPLICA = "SEESAW_ROLLOUT_REPLICA"  # set in rollout-only pods (spec.rollout.replicas): which one
ROLLOUT_REPLICAS = "SEESAW_ROLLOUT_REPLICAS"  # replicas asked for when the pod was made (kubectl scale changes it; the ConfigMap keeps the first)
NUM_PODS = "SEESAW_NUM_PODS"
RENDEZVOUS = "SEESAW_RENDEZVOUS"          # host of pod 0 (the headless Service's name for it)
RESTART_ATTEMPT = "SEESAW_RESTART_ATTEMPT"
POD_IP = "SEESAW_POD_IP"                  # this pod's address, for peers (Mooncake, the gang)
RUN_DIR = "SEESAW_RUN_DIR"
MODEL_DIR = "SEESAW_MODEL_DIR"
MODEL_CACHE = "SEESAW_MODEL_CACHE"        # where a pod prepares spec.model.hub/package/generate (default: its run volume)
RESUME_FROM = "SEESAW_RESUME_FROM"        # checkpoint to continue from after a gang restart
SUMMARY_JSON = "SEESAW_SUMMARY_JSON"
KEEP_FIRST_BATCH = "SEESAW_KEEP_FIRST_BATCH"  # 1: write iteration 1's training batch to the run dir (seesaw replay)
TRAINER_PORT = "SEESAW_TRAINER_PORT"
ROLLOUT_PORT = "SEESAW_ROLLOUT_PORT"            # engine e of the pod serves on ROLLOUT_PORT + e
ROLLOUT_ENGINES = "SEESAW_ROLLOUT_ENGINES"      # vLLM engines in the pod (one per tensor-parallel group)
ROLLOUT_ENGINE = "SEESAW_ROLLOUT_ENGINE"        # set by the rollout launcher: which engine a process is
TRAINER_PROCESSES = "SEESAW_TRAINER_PROCESSES"  # trainer ranks in the pod: one per GPU, one on the CPU
TRAINER_DIST_PORT = "SEESAW_TRAINER_DIST_PORT"  # torch.distributed rendezvous of all trainer ranks, on pod 0
GANG_PORT = "SEESAW_GANG_PORT"            # pod 0's checkpoint engine: where the followers join
TRAINER_URL = "SEESAW_TRAINER_URL"
ROLLOUT_URL = "SEESAW_ROLLOUT_URL"
COLOCATED = "SEESAW_COLOCATED"            # 0 where trainer and rollout do not share a GPU
CPU_THREADS = "SEESAW_CPU_THREADS"        # threads a CPU worker may use: its share of the pod's cores
JOB_METRICS_PORT = "SEESAW_JOB_METRICS_PORT"  # pod 0's checkpoint engine serves Prometheus /metrics here

# --- exit codes ------------------------------------------------------------------------------
EXIT_UNRECOVERABLE = 3  # the checkpoint engine's: a restart would fail the same way (an unreadable checkpoint)

# --- default ports (the operator's pods use these; `seesaw run` picks free ones) -------------
DEFAULT_TRAINER_PORT = 18100
DEFAULT_ROLLOUT_PORT = 18200
DEFAULT_GANG_PORT = 29500
DEFAULT_TRAINER_DIST_PORT = 29510
DEFAULT_JOB_METRICS_PORT = 9400
