"""`seesaw render`: the objects the operator would create for a job, as multi-document YAML."""
from __future__ import annotations

from typing import Any

import yaml

from seesaw.operator.build import build_all


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's job.yaml) as literal blocks, readable in review."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_yaml(manifest: dict[str, Any], namespace: str = "default") -> str:
    job = {**manifest, "metadata": {**manifest.get("metadata", {}), "namespace": namespace}}
    docs = build_all(job)
    header = (f"# Rendered by `seesaw render` for RLJob {job['metadata']['name']} in namespace {namespace}.\n"
              "# The operator adds ownerReferences to the RLJob (deleting it deletes these).\n")
    return header + "".join("---\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False) for doc in docs)
