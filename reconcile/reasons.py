"""Why a node changed: deepdiff of the recorded vs the new fingerprint, in words a person reads."""
from __future__ import annotations

from typing import Any, Mapping

from reconcile.fingerprint import PENDING
from reconcile.plan_model import Reason
from state.fingerprint_text import as_dict
from vocab.canonical import canonical_json
from vocab.masking import redact_obj

MAX_VALUE = 60


def short(value: Any) -> str:
    if isinstance(value, str):
        text = f'"{value}"'
    elif isinstance(value, dict) and "digest" in value:
        text = f"digest {str(value['digest'])[:8]}…"
    else:
        text = repr(value) if not isinstance(value, (dict, list)) else _compact(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _compact(value: Any) -> str:
    return canonical_json(value, ascii=True)


def _drop_pending(fp: dict[str, Any], pending: set[str]) -> dict[str, Any]:
    out = dict(fp)
    out["inputs"] = {k: v for k, v in fp.get("inputs", {}).items() if k not in pending}
    return out


def fingerprint_reasons(recorded: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[Reason]:
    """One Reason per changed leaf (inputs and code grouped per name); inputs still pending are skipped.

    Both sides are masked first: a reason shows a value cut short, and a secret cut in two would escape masking."""
    old: dict[str, Any] = redact_obj(as_dict(recorded))
    new: dict[str, Any] = redact_obj(as_dict(fresh))
    if old.get("key_schema") != new.get("key_schema"):
        return [Reason(field="key_schema", message=f"cache keys are computed anew by this version of flows (key "
                                                   f"schema {old.get('key_schema', 1)} → {new.get('key_schema')}): "
                                                   "this node runs once", old=old.get("key_schema", 1),
                       new=new.get("key_schema"))]
    pending = {k for k, v in new.get("inputs", {}).items() if v.get(PENDING)}
    old, new = _drop_pending(old, pending), _drop_pending(new, pending)
    from deepdiff import DeepDiff  # only when a fingerprint changed: a no-op plan does not pay its import

    diff = DeepDiff(old, new, view="tree", ignore_order=False, verbose_level=2)
    reasons: dict[str, Reason] = {}
    for change_type, items in diff.items():
        for item in items:
            path = item.path(output_format="list")
            reason = _describe(path, change_type, item.t1, item.t2, old, new)
            reasons.setdefault(reason.field, reason)
    return list(reasons.values())


def _missing(value: Any) -> bool:
    return type(value).__name__ == "NotPresent"


def _describe(path: list[Any], change: str, t1: Any, t2: Any, old: dict[str, Any], new: dict[str, Any]) -> Reason:
    section = path[0] if path else ""
    if section == "inputs" and len(path) >= 2:
        name = str(path[1])
        before = old.get("inputs", {}).get(name)
        after = new.get("inputs", {}).get(name)
        field = f"input {name}"
        if before is None:
            return Reason(field=field, message=f"input {name}: new input ({short(_val(after))})", new=_val(after))
        if after is None:
            return Reason(field=field, message=f"input {name}: removed (was {short(_val(before))})", old=_val(before))
        if "digest" in before or "digest" in after:
            kind = "file" if str(after.get("type", "")).startswith("file") else after.get("type", "value")
            b, a = before.get("digest", _val(before)), after.get("digest", _val(after))
            return Reason(field=field, message=f"input {name} ({kind}): digest {str(b)[:8]}… → {str(a)[:8]}…",
                          old=b, new=a)
        if before.get("type") != after.get("type"):
            return Reason(field=field, message=f"input {name}: type {before.get('type')} → {after.get('type')}",
                          old=before.get("type"), new=after.get("type"))
        return Reason(field=field, message=f"input {name}: {short(_val(before))} → {short(_val(after))}",
                      old=_val(before), new=_val(after))
    if section == "code" and len(path) >= 2:
        name = str(path[1])
        if _missing(t1):
            return Reason(field=f"code {name}", message=f"code: {name} added", new=t2)
        if _missing(t2):
            return Reason(field=f"code {name}", message=f"code: {name} no longer used", old=t1)
        return Reason(field=f"code {name}", message=f"code: {name} changed", old=t1, new=t2)
    if section == "code":
        return Reason(field="code", message="code changed")
    if section == "task" and len(path) >= 2:
        what = str(path[1])
        if what == "config" and len(path) >= 3:
            field = f"config {path[2]}"
            b = old.get("task", {}).get("config", {}).get(path[2])
            a = new.get("task", {}).get("config", {}).get(path[2])
            return Reason(field=field, message=f"{path[2]}: {short(b)} → {short(a)}", old=b, new=a)
        if what == "interface":
            return Reason(field="interface", message="interface (input/output names or types) changed",
                          old=old.get("task", {}).get("interface"), new=new.get("task", {}).get("interface"))
        b = old.get("task", {}).get(what)
        a = new.get("task", {}).get(what)
        return Reason(field=what, message=f"{what}: {short(b)} → {short(a)}", old=b, new=a)
    label = ".".join(str(p) for p in path) or "fingerprint"
    return Reason(field=label, message=f"{label} changed")


def _val(entry: dict[str, Any] | None) -> Any:
    if entry is None:
        return None
    return entry.get("value", entry.get("digest"))


def display_notes(old: dict[str, Any], new: dict[str, Any]) -> list[Reason]:
    """Changes of fields that are recorded but not keyed: shown, never a reason to run."""
    old, new = redact_obj(old), redact_obj(new)
    notes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            notes.append(Reason(field=name, message=f"{name}: {short(old.get(name))} → {short(new.get(name))} "
                                                    "(takes effect the next time it runs)",
                                old=old.get(name), new=new.get(name)))
    return notes
