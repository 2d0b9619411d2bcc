"""Pure builders: a resolved RLJob in, the Kubernetes objects the operator creates out.

No API calls here. `seesaw render` prints these objects and tests/operator validates every
one against the upstream Kubernetes schemas, so what is reviewed is what runs.
"""
from __future__ import annotations

import math
import re
import shlex
from typing import Any

import yaml

from seesaw import pod_contract
from seesaw.operator import constants as c
from seesaw.model.hub import TOKEN_ENV as HUB_TOKEN_ENV, TOKEN_KEY as HUB_TOKEN_KEY
from seesaw.spec import rollout_engines_per_pod, trainer_processes_per_pod

Obj = dict[str, Any]


# --- names -----------------------------------------------------------------------------------
def job_name(job: Obj) -> str:
    return job["metadata"]["name"]


def job_namespace(job: Obj) -> str:
    return job["metadata"].get("namespace") or "default"


def config_map_name(job: Obj) -> str:
    return f"{job_name(job)}-config"


def service_name(job: Obj) -> str:
    return job_name(job)


def service_account_name(job: Obj) -> str:
    return f"{job_name(job)}-job"


def role_binding_name(job: Obj) -> str:
    return f"{job_name(job)}-status-reporter"


def claim_template_name(job: Obj) -> str:
    return f"{job_name(job)}-gpus"


def pod_group_name(job: Obj) -> str:
    return job_name(job)


def pod_name(job: Obj, index: int) -> str:
    return f"{job_name(job)}-{index}"


def replica_pod_name(job: Obj, replica: int) -> str:
    return f"{job_name(job)}-rollout-{replica}"


def replica_selector(job: Obj) -> str:
    """The rollout replicas' pods, as the scale subresource's labelSelectorPath reports them."""
    return f"{c.LABEL_JOB}={job_name(job)},{c.LABEL_COMPONENT}={c.COMPONENT_ROLLOUT_REPLICA}"


def desired_replicas(job: Obj) -> int:
    return int(job["spec"]["rollout"]["replicas"])


def rendezvous_host(job: Obj) -> str:
    """DNS name of pod 0 through the headless Service (hostname.subdomain.namespace.svc)."""
    return f"{pod_name(job, 0)}.{service_name(job)}.{job_namespace(job)}.svc"


def num_pods(job: Obj) -> int:
    return int(job["spec"]["cluster"]["nodes"])


# --- common metadata ---------------------------------------------------------------------------
def selector_labels(job: Obj) -> dict[str, str]:
    return {c.LABEL_JOB: job_name(job)}


def labels(job: Obj, component: str) -> dict[str, str]:
    return {
        **selector_labels(job),
        c.LABEL_NAME: "seesaw",
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE,
    }


def owner_reference(job: Obj) -> Obj:
    """Makes the RLJob the controller of a child: deleting the RLJob deletes the child."""
    return {
        "apiVersion": c.RLJOB_API_VERSION,
        "kind": c.RLJOB_KIND,
        "name": job_name(job),
        "uid": job["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(job: Obj, name: str, component: str, extra_labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "namespace": job_namespace(job), "labels": {**labels(job, component), **(extra_labels or {})}}
    # `seesaw render` builds from a manifest that has no uid yet: no owner to point at.
    if job["metadata"].get("uid"):
        meta["ownerReferences"] = [owner_reference(job)]
    return meta


# --- quantities (to split the node's CPU and memory between the containers) --------------------
_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(value: str, field: str) -> float:
    """A Kubernetes quantity ('16', '500m', '256Gi') as a number of units."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?\s*", str(value))
    if not match:
        from seesaw.spec import SpecError

        raise SpecError(field, f"expected a Kubernetes quantity such as 16, 500m or 256Gi, got {value!r}")
    number, suffix = float(match.group(1)), match.group(2) or ""
    return number / 1000 if suffix == "m" else number * _SUFFIX[suffix]


def cpu_share(total: str, fraction: float) -> str:
    return f"{max(100, int(parse_quantity(total, 'spec.cluster.cpusPerNode') * 1000 * fraction))}m"


def memory_share(total: str, fraction: float) -> str:
    return f"{max(256, int(parse_quantity(total, 'spec.cluster.memoryPerNode') * fraction / 2**20))}Mi"


# Of the node's CPU and memory: the trainer holds the optimiser state offloaded to host
# memory during rollout; vLLM keeps its own offloaded weights; the checkpoint engine only
# conducts and stages weight buckets.
SHARES = {c.CONTAINER_TRAINER: 0.45, c.CONTAINER_ROLLOUT: 0.45, c.CONTAINER_CHECKPOINT_ENGINE: 0.10}
# A rollout replica has no trainer: its engines take the trainer's share too.
REPLICA_SHARES = {c.CONTAINER_ROLLOUT: 0.90, c.CONTAINER_CHECKPOINT_ENGINE: 0.10}


def container_resources(job: Obj, container: str, replica: bool = False) -> Obj:
    cluster = job["spec"]["cluster"]
    share = (REPLICA_SHARES if replica else SHARES)[container]
    memory = memory_share(cluster["memoryPerNode"], share)
    resources: Obj = {
        "requests": {"cpu": cpu_share(cluster["cpusPerNode"], share), "memory": memory},
        # No CPU limit (CFS throttling stalls NCCL and tokenisation); a memory limit so that
        # one container's leak is its own OOM, not the node's.
        "limits": {"memory": memory},
    }
    gpus = int(cluster["gpusPerNode"])
    if gpus and container in (c.CONTAINER_TRAINER, c.CONTAINER_ROLLOUT):
        if cluster["gpuSharing"] == "dra":
            resources["claims"] = [{"name": "gpus"}]
        elif container == (c.CONTAINER_ROLLOUT if replica else c.CONTAINER_TRAINER):  # the one that asks the device plugin
            resources["limits"]["nvidia.com/gpu"] = gpus
            resources["requests"]["nvidia.com/gpu"] = gpus
    return resources


# --- children ----------------------------------------------------------------------------------
def resolved_config(job: Obj) -> Obj:
    """The manifest the pods read: what the operator acts on, defaults filled in."""
    return {
        "apiVersion": c.RLJOB_API_VERSION,
        "kind": c.RLJOB_KIND,
        "metadata": {"name": job_name(job), "namespace": job_namespace(job)},
        "spec": job["spec"],
    }


def build_config_map(job: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(job, config_map_name(job), "config"),
        "data": {c.CONFIG_FILE: yaml.safe_dump(resolved_config(job), sort_keys=False)},
    }


def build_service(job: Obj) -> Obj:
    """Headless: gives pod i the DNS name <job>-i.<job>.<ns>.svc for rendezvous."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(job, service_name(job), "rendezvous"),
        "spec": {
            "clusterIP": "None",
            # Rendezvous happens before the pods are Ready.
            "publishNotReadyAddresses": True,
            "selector": selector_labels(job),
            "ports": [
                {"name": "rendezvous", "port": c.RENDEZVOUS_PORT, "targetPort": c.RENDEZVOUS_PORT, "protocol": "TCP"},
                {"name": "trainer-dist", "port": c.TRAINER_DIST_PORT, "targetPort": c.TRAINER_DIST_PORT, "protocol": "TCP"},
            ],
        },
    }


def build_service_account(job: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(job, service_account_name(job), "status-reporter"),
    }


def build_role_binding(job: Obj, cluster_role: str) -> Obj:
    """Binds the job's ServiceAccount, in the job's namespace only, to the narrow ClusterRole
    that lets pod 0's checkpoint engine patch RLJob status and post events."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(job, role_binding_name(job), "status-reporter"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account_name(job), "namespace": job_namespace(job)}],
    }


def build_resource_claim_template(job: Obj) -> Obj:
    """DRA: each pod gets one ResourceClaim for all its GPUs, shared by trainer and rollout."""
    cluster = job["spec"]["cluster"]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": metadata(job, claim_template_name(job), "gpus"),
        "spec": {
            "metadata": {"labels": labels(job, "gpus")},
            "spec": {"devices": {"requests": [{
                "name": "gpus",
                "exactly": {
                    "deviceClassName": cluster["deviceClassName"],
                    "allocationMode": "ExactCount",
                    "count": int(cluster["gpusPerNode"]),
                },
            }]}},
        },
    }


def build_pod_group(job: Obj) -> Obj:
    """All-or-nothing scheduling of the gang (Volcano or the coscheduling plugin)."""
    cluster = job["spec"]["cluster"]
    meta = metadata(job, pod_group_name(job), "gang")
    if cluster["gangScheduling"] == "volcano":
        spec: Obj = {"minMember": num_pods(job)}
        if cluster.get("queue"):
            spec["queue"] = cluster["queue"]
        if cluster.get("priorityClassName"):
            spec["priorityClassName"] = cluster["priorityClassName"]
        return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup", "metadata": meta, "spec": spec}
    timeout = int(job["spec"]["timeouts"]["startupSeconds"])
    return {
        "apiVersion": "scheduling.x-k8s.io/v1alpha1",
        "kind": "PodGroup",
        "metadata": meta,
        "spec": {"minMember": num_pods(job), "scheduleTimeoutSeconds": timeout},
    }


def scheduler_name(job: Obj) -> str | None:
    cluster = job["spec"]["cluster"]
    if cluster.get("schedulerName"):
        return cluster["schedulerName"]
    return {"volcano": "volcano", "coscheduling": "scheduler-plugins-scheduler"}.get(cluster["gangScheduling"])


def build_children(job: Obj, cluster_role: str = c.JOB_CLUSTERROLE_DEFAULT) -> list[Obj]:
    """Every child except the pods, in creation order."""
    cluster = job["spec"]["cluster"]
    children = [build_config_map(job), build_service(job), build_service_account(job),
                build_role_binding(job, cluster_role)]
    if int(cluster["gpusPerNode"]) and cluster["gpuSharing"] == "dra":
        children.append(build_resource_claim_template(job))
    if cluster["gangScheduling"] != "none":
        children.append(build_pod_group(job))
    return children


# --- the pod ---------------------------------------------------------------------------------------
def _common_env(job: Obj) -> list[Obj]:
    """What every container of every pod of the job reads (seesaw.worker_env)."""
    env = [
        {"name": pod_contract.JOB_CONFIG, "value": f"{c.CONFIG_DIR}/{c.CONFIG_FILE}"},
        {"name": pod_contract.JOB_NAME, "value": job_name(job)},
        {"name": pod_contract.NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": pod_contract.NUM_PODS, "value": str(num_pods(job))},
        {"name": pod_contract.RENDEZVOUS, "value": rendezvous_host(job)},
        {"name": pod_contract.POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": pod_contract.RUN_DIR, "value": c.RUN_DIR},
        {"name": pod_contract.ROLLOUT_PORT, "value": str(c.ROLLOUT_PORT)},
        {"name": pod_contract.ROLLOUT_ENGINES, "value": str(rollout_engines_per_pod(job["spec"]))},
        {"name": pod_contract.GANG_PORT, "value": str(c.RENDEZVOUS_PORT)},
        # kubectl scale changes the count after the ConfigMap was written: the pod carries it
        {"name": pod_contract.ROLLOUT_REPLICAS, "value": str(desired_replicas(job))},
    ]
    model_dir = model_directory(job)
    if model_dir:
        env.append({"name": pod_contract.MODEL_DIR, "value": model_dir})
    env += _hub_env(job["spec"]["model"])
    if job["spec"]["cluster"]["gpusPerNode"] == 0:
        env.append({"name": "CUDA_VISIBLE_DEVICES", "value": ""})
    return env


def _env(job: Obj, index: int, attempt: int, resume_from: str | None) -> list[Obj]:
    """A gang pod's: its index and attempt, and its trainer's ranks and ports."""
    spec = job["spec"]
    env = _common_env(job) + [
        {"name": pod_contract.POD_INDEX, "value": str(index)},
        {"name": pod_contract.RESTART_ATTEMPT, "value": str(attempt)},
        {"name": pod_contract.TRAINER_PORT, "value": str(c.TRAINER_PORT)},
        {"name": pod_contract.TRAINER_PROCESSES, "value": str(trainer_processes_per_pod(spec))},
        {"name": pod_contract.TRAINER_DIST_PORT, "value": str(c.TRAINER_DIST_PORT)},
        {"name": pod_contract.COLOCATED, "value": "1"},
    ]
    if resume_from:
        env.append({"name": pod_contract.RESUME_FROM, "value": resume_from})
    return env


def _replica_env(job: Obj, replica: int) -> list[Obj]:
    """A rollout replica's: which one it is; no trainer shares its GPUs."""
    return _common_env(job) + [
        {"name": pod_contract.ROLLOUT_REPLICA, "value": str(replica)},
        {"name": pod_contract.COLOCATED, "value": "0"},
    ]


def model_directory(job: Obj) -> str | None:
    model = job["spec"]["model"]
    path = model.get("path")
    if not path:
        return None
    if model.get("pvc") and not path.startswith(c.MODELS_DIR + "/"):
        return f"{c.MODELS_DIR}/{path.lstrip('/')}"
    return path


def _hub_env(model: Obj) -> list[Obj]:
    """spec.model.hub: its token from the Secret; with a claim, the claim is the download cache."""
    hub = model.get("hub")
    if not hub:
        return []
    env = [{"name": pod_contract.MODEL_CACHE, "value": c.MODELS_DIR}] if model.get("pvc") else []
    if hub.get("tokenSecret"):
        env.append({"name": HUB_TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": hub["tokenSecret"], "key": HUB_TOKEN_KEY}}})
    return env


def _mounts(job: Obj, container: str, replica: bool = False) -> list[Obj]:
    spec = job["spec"]
    mounts = [
        {"name": "config", "mountPath": c.CONFIG_DIR, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "run", "mountPath": c.RUN_DIR},
    ]
    if container in (c.CONTAINER_TRAINER, c.CONTAINER_CHECKPOINT_ENGINE) and not replica:
        mounts.append({"name": "checkpoints", "mountPath": spec["checkpoint"]["path"]})
    if spec["model"].get("pvc"):
        # a hub model is downloaded into the claim; a path in it is only read
        mounts.append({"name": "models", "mountPath": c.MODELS_DIR, "readOnly": "hub" not in spec["model"]})
    return mounts


def _volumes(job: Obj, replica: bool = False) -> list[Obj]:
    spec = job["spec"]
    volumes: list[Obj] = [
        {"name": "config", "configMap": {"name": config_map_name(job), "items": [{"key": c.CONFIG_FILE, "path": c.CONFIG_FILE}]}},
        # The container runtime's default /dev/shm is 64 MiB: NCCL and vLLM's tensor-parallel
        # workers exchange through it and fail or hang with that little.
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec["cluster"]["shmSize"]}},
        {"name": "run", "emptyDir": {}},
    ]
    if replica:
        pass  # a replica keeps no checkpoints
    elif spec["checkpoint"].get("pvc"):
        volumes.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": spec["checkpoint"]["pvc"]}})
    else:
        volumes.append({"name": "checkpoints", "emptyDir": {}})
    if spec["model"].get("pvc"):
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": spec["model"]["pvc"],
                                                                     "readOnly": "hub" not in spec["model"]}})
    return volumes


def _python(module: str) -> list[str]:
    return ["python", "-m", module]


def _device_plugin_command(container: str, module: str) -> list[str]:
    """devicePlugin mode: the trainer publishes the GPUs the device plugin gave it; the rollout
    container waits for that list and restricts CUDA to it (see docs/OPERATOR.md)."""
    if container == c.CONTAINER_TRAINER:
        script = (
            f"ids=$(nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null | paste -sd, -); "
            f"echo \"${{ids:-$NVIDIA_VISIBLE_DEVICES}}\" > {c.VISIBLE_DEVICES_FILE}.tmp && "
            f"mv {c.VISIBLE_DEVICES_FILE}.tmp {c.VISIBLE_DEVICES_FILE}; "
            f"exec {shlex.join(_python(module))}"
        )
    else:
        script = (
            f"while [ ! -s {c.VISIBLE_DEVICES_FILE} ]; do sleep 1; done; "
            f"export CUDA_VISIBLE_DEVICES=$(cat {c.VISIBLE_DEVICES_FILE}); "
            f"exec {shlex.join(_python(module))}"
        )
    return ["/bin/sh", "-c", script]


def _server_container(job: Obj, env: list[Obj], name: str, image: str, module: str, port: int,
                      replica: bool = False) -> Obj:
    cluster = job["spec"]["cluster"]
    # devicePlugin mode: in a gang pod the trainer holds the GPUs and the rollout container
    # is pointed at them; a replica's rollout container asks for them itself.
    shares_devices = int(cluster["gpusPerNode"]) > 0 and cluster["gpuSharing"] == "devicePlugin" and not replica
    env = list(env)
    if shares_devices and name == c.CONTAINER_ROLLOUT:
        # Asks the NVIDIA container runtime for every GPU of the node; CUDA_VISIBLE_DEVICES
        # (set by the command) narrows it to the trainer's. Isolation is by convention here.
        env += [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"}]
    if name == c.CONTAINER_ROLLOUT and int(cluster["gpusPerNode"]) == 0 and job["spec"]["rollout"]["tensorParallel"] > 1:
        # vLLM's CPU build binds each TP worker's threads to a NUMA node of its own, and
        # refuses on a node with fewer NUMA nodes than workers; the pod's CPU limit shares them
        env.append({"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"})
    startup_seconds = float(job["spec"]["timeouts"]["startupSeconds"])
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": job["spec"]["images"]["pullPolicy"],
        "command": _device_plugin_command(name, module) if shares_devices else _python(module),
        # Native sidecar: runs for the pod's life and stops when the checkpoint engine exits,
        # so the pod ends with the run.
        "restartPolicy": "Always",
        "env": env,
        "ports": [{"name": f"{name}-http", "containerPort": port, "protocol": "TCP"}],
        # The port opens at once (the model loads in the background): liveness checks the
        # process answers; readiness (/healthz 200) waits for the model.
        "startupProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 6},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5, "timeoutSeconds": 5,
                           "failureThreshold": max(3, int(startup_seconds // 5))},
        "resources": container_resources(job, name, replica),
        "volumeMounts": _mounts(job, name),
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def checkpoint_engine_security_context(job: Obj) -> Obj:
    """The checkpoint engine scores rewards. For code rewards it runs each response in a
    bubblewrap sandbox, which creates user, mount, PID and network namespaces as the
    container's own unprivileged user: the runtime's default seccomp profile allows unshare,
    mount and namespace clones only with CAP_SYS_ADMIN, and its default AppArmor profile
    denies mount, so a code job's checkpoint engine runs without both (and gains no
    capability, no privilege escalation). The sandbox refuses to start otherwise
    (docs/OPERATOR.md, "Code rewards")."""
    context: Obj = {"allowPrivilegeEscalation": False}
    if job["spec"]["reward"]["type"] == "code":
        context["seccompProfile"] = {"type": "Unconfined"}
        context["appArmorProfile"] = {"type": "Unconfined"}
    return context


def _checkpoint_engine_container(job: Obj, env: list[Obj], replica: bool = False) -> Obj:
    images = job["spec"]["images"]
    container = {
        "name": c.CONTAINER_CHECKPOINT_ENGINE,
        "image": images["checkpointEngine"],
        "imagePullPolicy": images["pullPolicy"],
        "command": _python(c.CHECKPOINT_ENGINE_MODULE),
        "env": env,
        "resources": container_resources(job, c.CONTAINER_CHECKPOINT_ENGINE, replica),
        "volumeMounts": _mounts(job, c.CONTAINER_CHECKPOINT_ENGINE, replica),
        # a rollout replica's loads the task too, and refuses to start without the sandbox
        "securityContext": checkpoint_engine_security_context(job),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if not replica:  # pod 0's conducts: it serves the job's Prometheus metrics and feeds the trackers
        container["ports"] = [{"name": c.METRICS_PORT_NAME, "containerPort": pod_contract.DEFAULT_JOB_METRICS_PORT,
                               "protocol": "TCP"}]
        secret = job["spec"]["logging"].get("secretName")
        if secret:  # the trackers' credentials
            container["envFrom"] = [{"secretRef": {"name": secret}}]
    return container


# --- Kueue (plain pods: https://kueue.sigs.k8s.io/docs/tasks/run/plain_pods/) ------------------------
def queue_name(job: Obj) -> str | None:
    """The LocalQueue named by the RLJob's kueue.x-k8s.io/queue-name label, if any."""
    return (job["metadata"].get("labels") or {}).get(c.KUEUE_QUEUE_LABEL) or None


def gang_group_name(job: Obj, attempt: int) -> str:
    """Each gang attempt is a pod group of its own: the last one's pods hold Kueue's finalizer
    (and their names) until its Workload ends, so the next gang cannot be its replacement."""
    return f"{job_name(job)}-gang-{attempt}"


def _queue(job: Obj, meta: Obj, group: str | None, total: int) -> None:
    """Kueue's labels on a pod: its queue and (for the gang) the pod group admitted all or
    nothing. Kueue gates the pods until the group fits the ClusterQueue's quota."""
    queue = queue_name(job)
    if not queue:
        return
    meta["labels"][c.KUEUE_QUEUE_LABEL] = queue
    priority = (job["metadata"].get("labels") or {}).get(c.KUEUE_PRIORITY_LABEL)
    if priority:
        meta["labels"][c.KUEUE_PRIORITY_LABEL] = priority
    if group:
        meta["labels"][c.KUEUE_GROUP_LABEL] = group
        meta["annotations"][c.KUEUE_GROUP_TOTAL_ANNOTATION] = str(total)


def _pod(job: Obj, meta: Obj, containers_and_more: Obj) -> Obj:
    """A pod of the job, gang or replica: what both have in common, and where they may go
    (one per node, the cluster fields, the scheduler)."""
    cluster = job["spec"]["cluster"]
    meta["annotations"]["kubectl.kubernetes.io/default-container"] = c.CONTAINER_CHECKPOINT_ENGINE
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account_name(job),
        "enableServiceLinks": False,
        "securityContext": {"fsGroup": 10001},
        **containers_and_more,
    }
    if int(cluster["gpusPerNode"]) and cluster["gpuSharing"] == "dra":
        pod_spec["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": claim_template_name(job)}]
    if num_pods(job) + desired_replicas(job) > 1:
        # One pod per node: each pod takes a whole node's GPUs.
        term = {"labelSelector": {"matchLabels": selector_labels(job)}, "topologyKey": "kubernetes.io/hostname"}
        pod_spec["affinity"] = {"podAntiAffinity": (
            {"requiredDuringSchedulingIgnoredDuringExecution": [term]} if int(cluster["gpusPerNode"])
            else {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]})}
    for key in ("nodeSelector", "tolerations", "priorityClassName"):
        if cluster.get(key):
            pod_spec[key] = cluster[key]
    if scheduler_name(job):
        pod_spec["schedulerName"] = scheduler_name(job)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}


def build_pod(job: Obj, index: int, attempt: int = 0, resume_from: str | None = None,
              cluster_role_bound: bool = True) -> Obj:
    """Pod `index` of the gang: trainer and rollout as native sidecars on the same GPUs, the
    checkpoint engine as the main container (its exit ends the pod)."""
    spec = job["spec"]
    cluster, images = spec["cluster"], spec["images"]
    env = _env(job, index, attempt, resume_from)
    engine_env = list(env)
    if index == 0:
        engine_env.append({"name": "SEESAW_REPORT_STATUS", "value": "true"})
    meta = metadata(job, pod_name(job, index), "worker", {
        c.LABEL_POD_INDEX: str(index),
        c.LABEL_ATTEMPT: str(attempt),
    })
    meta["annotations"] = {}
    if cluster["gangScheduling"] == "volcano":
        meta["annotations"]["scheduling.k8s.io/group-name"] = pod_group_name(job)
    elif cluster["gangScheduling"] == "coscheduling":
        meta["labels"]["scheduling.x-k8s.io/pod-group"] = pod_group_name(job)
    _queue(job, meta, gang_group_name(job, attempt), num_pods(job))
    return _pod(job, meta, {
        "hostname": pod_name(job, index),
        "subdomain": service_name(job),
        # Only pod 0's checkpoint engine talks to the API server (status reporting).
        "automountServiceAccountToken": index == 0,
        # CUDA IPC between the trainer and rollout containers needs each side to see the
        # other's processes; without a shared PID namespace opening the handles fails.
        "shareProcessNamespace": True,
        "terminationGracePeriodSeconds": 120,
        "initContainers": [
            _server_container(job, env, c.CONTAINER_TRAINER, images["trainer"], c.TRAINER_MODULE, c.TRAINER_PORT),
            _server_container(job, env, c.CONTAINER_ROLLOUT, images["rollout"], c.ROLLOUT_MODULE, c.ROLLOUT_PORT),
        ],
        "containers": [_checkpoint_engine_container(job, engine_env)],
        "volumes": _volumes(job),
    })


def build_replica_pod(job: Obj, replica: int) -> Obj:
    """Rollout replica `replica` (spec.rollout.replicas): the rollout container as a native
    sidecar and the checkpoint engine, which joins pod 0's gang and relays its weights and
    prompts; no trainer. It outlives gang restarts (it joins the new gang) and is not part of
    the gang's PodGroup or Kueue pod group: each replica is queued, preempted and replaced
    on its own."""
    spec = job["spec"]
    env = _replica_env(job, replica)
    meta = metadata(job, replica_pod_name(job, replica), c.COMPONENT_ROLLOUT_REPLICA, {c.LABEL_REPLICA: str(replica)})
    meta["annotations"] = {}
    _queue(job, meta, None, 1)
    return _pod(job, meta, {
        "automountServiceAccountToken": False,
        # Scale-down: the checkpoint engine stops taking prompts, lets the ones in flight
        # finish, leaves the gang and exits (checkpoint_engine/gang.py).
        "terminationGracePeriodSeconds": max(1, math.ceil(spec["timeouts"]["rolloutSeconds"])),
        "initContainers": [_server_container(job, env, c.CONTAINER_ROLLOUT, spec["images"]["rollout"], c.ROLLOUT_MODULE,
                                              c.ROLLOUT_PORT, replica=True)],
        "containers": [_checkpoint_engine_container(job, env, replica=True)],
        "volumes": _volumes(job, replica=True),
    })


def build_pods(job: Obj, attempt: int = 0, resume_from: str | None = None) -> list[Obj]:
    return [build_pod(job, i, attempt, resume_from) for i in range(num_pods(job))]


def build_all(job: Obj, cluster_role: str = c.JOB_CLUSTERROLE_DEFAULT) -> list[Obj]:
    return build_children(job, cluster_role) + build_pods(job) + [build_replica_pod(job, r) for r in range(desired_replicas(job))]
