{{- /*
The RBAC rules, kept to the API calls the code makes. The source of truth is
operator/permissions.py (every apiGroup/resource/verb the operator and the job pods'
status reporter use); tests/helm checks that the rules rendered here grant exactly those
calls, no verb more, no wildcard. Change both together.
*/ -}}

{{- /* Operator, namespaced resources: granted cluster-wide, or by a Role in each watched namespace. */ -}}
{{- define "seesaw.rules.operatorNamespaced" -}}
- apiGroups: [seesaw.dev]
  resources: [rljobs]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [seesaw.dev]
  resources: [rljobs/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, services, serviceaccounts]
  verbs: [create]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- /* Creating a RoleBinding to the job ClusterRole needs no `bind` verb: the operator holds every right that role grants. */}}
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [create]
- apiGroups: [resource.k8s.io]
  resources: [resourceclaimtemplates]
  verbs: [create]
- apiGroups: [scheduling.volcano.sh, scheduling.x-k8s.io]
  resources: [podgroups]
  verbs: [create]
{{- end -}}

{{- /* Operator, cluster-scoped resources: always a ClusterRole. */ -}}
{{- define "seesaw.rules.operatorCluster" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}

{{- /* kopf peering: the operator announces itself and reads its peers (no create: the chart makes the object). */ -}}
{{- define "seesaw.rules.peering" -}}
- apiGroups: [kopf.dev]
  resources: [{{ ternary "clusterkopfpeerings" "kopfpeerings" .Values.watch.allNamespaces }}]
  verbs: [get, list, watch, patch]
{{- end -}}

{{- /* Job pods: the checkpoint-engine sidecar reports progress into its RLJob's status. */ -}}
{{- define "seesaw.rules.job" -}}
- apiGroups: [seesaw.dev]
  resources: [rljobs]
  verbs: [get]
- apiGroups: [seesaw.dev]
  resources: [rljobs/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
