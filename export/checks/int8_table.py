"""The int8 weight family's table summarised: per accuracy metric, the worst healthy result (a
family member under the shipped recipe), the best broken one (a broken recipe or member) and the
gap between them; a bound can only sit in a positive gap. scripts/int8_family.py writes the table
(export/checks/int8_family.py measures it) and prints this; docs/int8.md renders it from
docs/data/. No torch import."""

from __future__ import annotations

from export.records import ACCURACY_METRICS


def worst_of(per: dict) -> dict:
    """Each metric's worst value over the photos of one row ({photo: {metric: value}})."""
    return {m: (min if up else max)(v[m] for v in per.values()) for m, up in ACCURACY_METRICS.items()}


def split(table: dict, judged: set[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(healthy rows, broken rows), each row a worst-of with its "case"; members outside `judged`
    (default: each entry's own "judged" flag) are left out."""
    healthy: list[dict] = []
    broken: list[dict] = []
    for key, t in table.items():
        if not (t["member"] in judged if judged is not None else t["judged"]):
            continue
        for recipe, per in t["rows"].items():
            worst = {**worst_of(per), "case": f"{key}/{recipe}"}
            (broken if t["broken_member"] or recipe != "shipped" else healthy).append(worst)
    return healthy, broken


def summary(table: dict, judged: set[str] | None = None) -> str:
    """A markdown table: metric, worst healthy, best broken, gap (positive: a bound fits between)."""
    healthy, broken = split(table, judged)
    lines = ["| metric | worst healthy | best broken | gap |", "| --- | --- | --- | --- |"]
    for m, up in ACCURACY_METRICS.items():
        if not healthy or not broken:
            break
        h = (min if up else max)(healthy, key=lambda r: r[m])
        b = (max if up else min)(broken, key=lambda r: r[m])
        gap = (h[m] - b[m]) if up else (b[m] - h[m])
        lines.append(f"| {m} | {h[m]:.4g} ({h['case']}) | {b[m]:.4g} ({b['case']}) | {gap:+.4g} |")
    return "\n".join(lines)
