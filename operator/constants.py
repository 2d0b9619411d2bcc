"""Names that are API: labels, condition types, phases and event reasons, defined once."""
from __future__ import annotations

from seesaw import pod_contract
from seesaw.spec import API_GROUP, API_VERSION, KIND, PLURAL

GROUP, VERSION = API_GROUP, API_VERSION
RLJOB_KIND, RLJOB_PLURAL = KIND, PLURAL
RLJOB_API_VERSION = f"{API_GROUP}/{API_VERSION}"

# The value of spec.managedBy that means "this operator"; any other value is left alone
# (Kueue's MultiKueue, for instance, sets its own and runs the job elsewhere).
CONTROLLER_NAME = "seesaw.dev/operator"
FIELD_MANAGER = "seesaw-operator"

# --- labels and annotations on every child ------------------------------------------------
LABEL_JOB = "seesaw.dev/job"
LABEL_POD_INDEX = "seesaw.dev/pod-index"
LABEL_ATTEMPT = "seesaw.dev/restart-attempt"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
MANAGED_BY_VALUE = "seesaw-operator"
LABEL_REPLICA = "seesaw.dev/rollout-replica"  # which rollout replica a rollout-only pod is
COMPONENT_ROLLOUT_REPLICA = "rollout-replica"

# --- Kueue's plain-pod integration (labels and annotations it reads on each pod) ------------
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_GROUP_TOTAL_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
# Set on a failed job's pods, so that Kueue finishes the group's Workload instead of waiting
# for replacement pods that will never come.
KUEUE_RETRIABLE_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"
# The pod condition Kueue sets on the pods it stops (preemption, eviction), before it deletes them.
KUEUE_TERMINATION_CONDITION = "TerminationTarget"

# --- the pod -------------------------------------------------------------------------------
CONFIG_DIR = "/etc/seesaw"
CONFIG_FILE = "job.yaml"
MODELS_DIR = "/models"
RUN_DIR = "/var/run/seesaw"
# Shared by the trainer and the rollout container in devicePlugin mode: the trainer writes
# the GPU ids the device plugin gave it, the rollout container reads them.
VISIBLE_DEVICES_FILE = f"{RUN_DIR}/visible-devices"
RENDEZVOUS_PORT = pod_contract.DEFAULT_GANG_PORT
TRAINER_PORT = pod_contract.DEFAULT_TRAINER_PORT
ROLLOUT_PORT = pod_contract.DEFAULT_ROLLOUT_PORT
TRAINER_DIST_PORT = pod_contract.DEFAULT_TRAINER_DIST_PORT

CONTAINER_TRAINER = "trainer"
CONTAINER_ROLLOUT = "rollout"
CONTAINER_CHECKPOINT_ENGINE = "checkpoint-engine"
TRAINER_MODULE = "seesaw.trainer.launch"  # one trainer rank per GPU
ROLLOUT_MODULE = "seesaw.rollout.launch"  # one vLLM engine per rollout tensor-parallel group
CHECKPOINT_ENGINE_MODULE = "seesaw.checkpoint_engine.sidecar"

# The ClusterRole (installed by the Helm chart) that each job's ServiceAccount is bound to,
# so that pod 0's checkpoint engine may patch its RLJob's status and post events.
JOB_CLUSTERROLE_ENV = "SEESAW_JOB_CLUSTERROLE"
JOB_CLUSTERROLE_DEFAULT = "seesaw-job"

# --- phases ------------------------------------------------------------------------------------
PENDING = "Pending"
INITIALIZING = "Initializing"
RUNNING = "Running"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
PHASES = (PENDING, INITIALIZING, RUNNING, SUSPENDED, SUCCEEDED, FAILED)
FINISHED = (SUCCEEDED, FAILED)

# --- condition types ---------------------------------------------------------------------------
COND_READY = "Ready"
COND_SUSPENDED = "Suspended"
COND_RESTARTING = "Restarting"
COND_COMPLETE = "Complete"
COND_FAILED = "Failed"
CONDITION_TYPES = (COND_READY, COND_SUSPENDED, COND_RESTARTING, COND_COMPLETE, COND_FAILED)

# --- reasons (conditions and events) -----------------------------------------------------------
REASON_PODS_CREATED = "PodsCreated"
REASON_PODS_PENDING = "PodsPending"
REASON_PODS_STARTING = "PodsStarting"
REASON_GANG_READY = "GangReady"
REASON_PHASE_CHANGED = "PhaseChanged"
REASON_SUSPENDED = "JobSuspended"
REASON_RESUMED = "JobResumed"
REASON_RESTARTING = "Restarting"
REASON_POD_FAILED = "PodFailed"
REASON_RESTART_LIMIT = "RestartLimitExceeded"
REASON_NON_RETRYABLE = "NonRetryableFailure"
REASON_DEADLINE = "DeadlineExceeded"
REASON_SPEC_INVALID = "SpecInvalid"
REASON_UNRECOVERABLE = "Unrecoverable"  # the checkpoint engine exited with pod_contract.EXIT_UNRECOVERABLE
REASON_SUCCEEDED = "JobSucceeded"
REASON_FINISHED = "JobFinished"
REASON_CHECKPOINT_WRITTEN = "CheckpointWritten"
REASON_CHECKPOINT_LOST = "CheckpointLost"
REASON_TTL_EXPIRED = "TTLExpired"
REASON_CHILD_CREATE_FAILED = "CreateFailed"
REASON_PROGRESS_FAILED = "TrainingFailed"
REASON_PREEMPTED = "Preempted"  # Kueue (or the scheduler) took the gang's pods for other work
REASON_ROLLOUT_SCALED = "RolloutScaled"
REASON_ROLLOUT_REPLICA_FAILED = "RolloutReplicaFailed"
REASON_ROLLOUT_REPLICA_REPLACED = "RolloutReplicaReplaced"

# A pod that disappears or is evicted, as the pod's failure reason.
POD_LOST = "PodLost"

# Reasons of the conditions while nothing happened to them yet.
REASON_NOT_SUSPENDED = "NotSuspended"
REASON_NO_RESTART = "NoRestart"
REASON_NOT_FINISHED = "NotFinished"

# the port of pod 0's checkpoint engine that serves the job's Prometheus metrics
METRICS_PORT_NAME = "metrics"
