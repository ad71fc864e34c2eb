"""Changes the apply will refuse, that lose data, or that restart serving pods.

Immutable fields per the Kubernetes API: a workload's `spec.selector`
(https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#label-selector-updates),
a StatefulSet's spec except replicas, ordinals, template, updateStrategy,
persistentVolumeClaimRetentionPolicy and minReadySeconds
(https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#limitations and the
apiserver's validation), a bound PVC's spec except its storage request, which can only grow
(https://kubernetes.io/docs/concepts/storage/persistent-volumes/#expanding-persistent-volumes-claims),
a Service's `clusterIP` (https://kubernetes.io/docs/concepts/services-networking/service/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllm_gitops.resources import Resource
from vllm_gitops.sizing.quantity import parse_quantity

Key = tuple[str, str, str, str]  # API group, kind, namespace, name

# Hazard kinds, most serious first.
REFUSED = "refused"  # the apply fails: Flux / Argo CD stop syncing the cluster
DATA_LOSS = "data-loss"  # a volume (or everything in a namespace) is deleted or orphaned
DISRUPTION = "disruption"  # clients lose the address they use
RESTART = "restart"  # serving pods are replaced
KINDS = (REFUSED, DATA_LOSS, DISRUPTION, RESTART)

_SELECTOR_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_STATEFULSET_MUTABLE = {"replicas", "ordinals", "template", "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy", "minReadySeconds"}
RESIZE_PROCEDURE = (
    "To resize the volumes of a running StatefulSet: (1) edit each existing PVC "
    "(`kubectl edit pvc <template>-<statefulset>-<ordinal>`) to the new size (its StorageClass "
    "must allow volume expansion); (2) `kubectl delete statefulset <name> --cascade=orphan` "
    "(the pods and volumes keep running); (3) merge: GitOps re-creates the StatefulSet with the "
    "new template, adopting the pods and volumes."
)


@dataclass(frozen=True)
class Hazard:
    kind: str  # one of KINDS
    resource: str  # e.g. "StatefulSet inference/vllm-qwen3"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "resource": self.resource, "message": self.message}


def describe(key: Key) -> str:
    """E.g. "StatefulSet inference/vllm-qwen3"."""
    _group, kind, namespace, name = key
    return f"{kind} {namespace + '/' if namespace else ''}{name}"


def _get(doc: dict[str, Any], *path: str) -> Any:
    node: Any = doc
    for step in path:
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return node


def hazards_of_change(key: Key, old: dict[str, Any], new: dict[str, Any],
                      serving: bool) -> list[Hazard]:
    kind, title = key[1], describe(key)
    found: list[Hazard] = []
    if kind in _SELECTOR_KINDS and _get(old, "spec", "selector") != _get(new, "spec", "selector"):
        found.append(Hazard(REFUSED, title, (
            "spec.selector is immutable: the apply fails with `field is immutable` and the sync "
            "stops. Keep the old selector, or delete the object (a StatefulSet with "
            "`--cascade=orphan`) and let GitOps re-create it.")))
    if kind == "StatefulSet":
        found += _statefulset_hazards(title, old, new)
    elif kind == "PersistentVolumeClaim":
        found += _pvc_hazards(title, old, new)
    elif kind == "Service":
        found += _service_hazards(title, old, new)
    if kind in _SELECTOR_KINDS and serving and (
            _get(old, "spec", "template") != _get(new, "spec", "template")):
        found.append(Hazard(RESTART, title, (
            "the pod template changes: every replica of this model server is replaced, one "
            "at a time, and each new pod loads the model again before it serves.")))
    return found


def _statefulset_hazards(title: str, old: dict[str, Any], new: dict[str, Any]) -> list[Hazard]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    changed = sorted(k for k in old_spec.keys() | new_spec.keys()
                     if k not in _STATEFULSET_MUTABLE and k != "selector"
                     and old_spec.get(k) != new_spec.get(k))
    found = []
    if "volumeClaimTemplates" in changed:
        found.append(Hazard(REFUSED, title, (
            "spec.volumeClaimTemplates is immutable: the apply fails with `updates to "
            "statefulset spec for fields other than ... are forbidden` and the sync stops; "
            "existing volumes would not change anyway. " + RESIZE_PROCEDURE)))
        changed.remove("volumeClaimTemplates")
    if changed:
        fields = ", ".join(f"spec.{name}" for name in changed)
        found.append(Hazard(REFUSED, title, (
            f"{fields} cannot change on an existing StatefulSet: the apply fails and the sync "
            "stops. Delete it with `kubectl delete statefulset <name> --cascade=orphan` "
            "(pods and volumes stay) and let GitOps re-create it.")))
    return found


def _storage(doc: dict[str, Any]) -> float | None:
    value = _get(doc, "spec", "resources", "requests", "storage")
    try:
        return parse_quantity(value) if value is not None else None
    except (ValueError, TypeError):
        return None


def _pvc_hazards(title: str, old: dict[str, Any], new: dict[str, Any]) -> list[Hazard]:
    found = []
    old_class, new_class = (_get(old, "spec", "storageClassName"),
                            _get(new, "spec", "storageClassName"))
    if old_class != new_class:
        found.append(Hazard(REFUSED, title, (
            f"storageClassName {old_class!r} -> {new_class!r}: a claim's class is immutable; "
            "the apply fails. Moving data to another class needs a new claim and a copy.")))
    old_size, new_size = _storage(old), _storage(new)
    if old_size is not None and new_size is not None and new_size < old_size:
        found.append(Hazard(REFUSED, title, (
            "the storage request shrinks: a volume can only grow, the apply fails. Create a "
            "smaller claim and copy the data if you must.")))
    return found


def _service_hazards(title: str, old: dict[str, Any], new: dict[str, Any]) -> list[Hazard]:
    found = []
    old_ip, new_ip = _get(old, "spec", "clusterIP"), _get(new, "spec", "clusterIP")
    if old_ip != new_ip and (old_ip or new_ip):
        found.append(Hazard(REFUSED, title, (
            f"spec.clusterIP {_ip(old_ip)} -> {_ip(new_ip)}: a Service's cluster IP (and "
            "whether it is headless) is immutable; the apply fails. Create a Service with "
            "another name instead, then remove the old one.")))
    old_type = _get(old, "spec", "type") or "ClusterIP"
    new_type = _get(new, "spec", "type") or "ClusterIP"
    if old_type != new_type:
        found.append(Hazard(REFUSED if "ExternalName" in (old_type, new_type) else DISRUPTION,
                            title, (
            f"spec.type {old_type} -> {new_type}: clients lose the address they use (a load "
            "balancer is created or deleted, node ports change); a switch to or from "
            "ExternalName is refused unless clusterIP is cleared too.")))
    return found


def _ip(value: Any) -> str:
    if value is None:
        return "unset (assigned by the cluster)"
    return "None (headless)" if value == "None" else str(value)


FLUX_UNIT = "Flux Kustomization"
# The annotation that keeps an object from being pruned, per GitOps tool:
# https://fluxcd.io/flux/components/kustomize/kustomizations/#garbage-collection and
# https://argo-cd.readthedocs.io/en/stable/user-guide/sync-options/#no-prune-resources
PRUNE_GUARD = {FLUX_UNIT: ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
               "Application": ("argocd.argoproj.io/sync-options", "Prune=false")}


def unit_kind(unit: Resource) -> str:
    """"Flux Kustomization" or "Application": the key of PRUNE_GUARD."""
    return FLUX_UNIT if unit.kind == "Kustomization" else unit.kind


def unit_label(unit: Resource) -> str:
    """"Flux Kustomization apps" or "Application dev-apps"."""
    return f"{unit_kind(unit)} {unit.name}"


def prunes(unit: Resource, doc: dict[str, Any]) -> bool:
    """Whether `unit` deletes `doc` (an object it applied) once it no longer renders it."""
    annotation, value = PRUNE_GUARD[unit_kind(unit)]
    annotations = _get(doc, "metadata", "annotations")
    if value in str((annotations if isinstance(annotations, dict) else {}).get(annotation, "")):
        return False
    if unit_kind(unit) == FLUX_UNIT:
        return unit.get("spec", "prune") is True
    return unit.get("spec", "syncPolicy", "automated", "prune") is True


Move = tuple[Resource, Resource]  # (old sync unit, new sync unit)


def hazards_of_moves(moves: dict[tuple[str, str], tuple[Move, list[Key]]]) -> list[Hazard]:
    """Objects a different Flux Kustomization / Argo CD Application applies at the head: the
    old one, pruning, may delete them before the new one applies them again. One hazard per
    (old, new) pair of sync units."""
    found = []
    for _, ((old, new), keys) in sorted(moves.items()):
        more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
        annotation, value = PRUNE_GUARD[unit_kind(old)]
        found.append(Hazard(RESTART, f"{describe(keys[0])}{more}", (
            f"moves from {unit_label(old)} to {unit_label(new)}: {unit_label(old)} prunes, and "
            f"may delete it before {unit_label(new)} applies it again, restarting what it "
            f"serves. To move it without that, first merge the annotation `{annotation}: "
            f"{value}` on it, then the move, then remove the annotation.")))
    return found


def hazards_of_removals(removed: dict[Key, dict[str, Any]],
                        added: dict[Key, dict[str, Any]]) -> list[Hazard]:
    """Deleted volumes, namespaces, and StatefulSet renames that orphan their volumes."""
    found = []
    for key, doc in removed.items():
        kind, title = key[1], describe(key)
        if kind == "PersistentVolumeClaim":
            found.append(Hazard(DATA_LOSS, title, (
                "the claim is removed: with pruning on, GitOps deletes it and (reclaim policy "
                "Delete) its volume and data.")))
        elif kind == "Namespace":
            found.append(Hazard(DATA_LOSS, title, (
                "the namespace is removed: pruning deletes it with every object and volume "
                "claim inside.")))
        elif kind == "StatefulSet" and _get(doc, "spec", "volumeClaimTemplates"):
            found.append(_statefulset_removal(key, doc, added))
    return found


def _statefulset_removal(key: Key, doc: dict[str, Any],
                         added: dict[Key, dict[str, Any]]) -> Hazard:
    templates = [str(_get(t, "metadata", "name")) for t in
                 _get(doc, "spec", "volumeClaimTemplates") or [] if isinstance(t, dict)]
    name = key[3]
    claims = ", ".join(f"{t}-{name}-<ordinal>" for t in templates)
    policy = _get(doc, "spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted")
    fate = ("deleted with it (whenDeleted: Delete)" if policy == "Delete"
            else "kept but no longer used, and still billed")
    successor = next((k for k, d in added.items() if k[1] == "StatefulSet" and k[2] == key[2]
                      and set(templates) & {str(_get(t, "metadata", "name")) for t in
                                            _get(d, "spec", "volumeClaimTemplates") or []
                                            if isinstance(t, dict)}), None)
    if successor is not None:
        return Hazard(DATA_LOSS, describe(key), (
            f"renamed to {successor[3]}: volume claims are named after the StatefulSet, so the "
            f"new one starts on new empty volumes (the model is downloaded again) and the old "
            f"claims {claims} are {fate}. To keep the data, keep the name."))
    return Hazard(DATA_LOSS, describe(key), f"removed: its volume claims {claims} are {fate}.")
