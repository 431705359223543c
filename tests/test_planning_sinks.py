"""Which SINKs keep outputs by their windows' ends (`monotone`): an aggregate's, and a
transform's of it that keeps the field as it is. Such a SINK tells what it kept by the ends, not by
positions, since a replay may close windows at other positions (checked end to end, under seeded
kills, by tests/integration/test_faults.py with `vitals`)."""
from __future__ import annotations

import json

from congregation.planning import plan_tradecraft
from hallelujah.tradecraft import parse_document
from tradecrafts import HERE


def sinks(document: dict) -> dict[str, str | None]:
    plan = plan_tradecraft(parse_document(document, HERE), lambda k: 0)
    return {j.spec["log"].split("/", 1)[1]: j.spec.get("monotone") for j in plan.jahs.values() if j.role == "sink"}


def test_an_aggregates_output_and_a_transform_that_keeps_its_window_end_are_kept_by_window() -> None:
    vitals = json.loads((HERE / "vitals.json").read_text())
    assert sinks(vitals) == {"per_minute": "window_end", "alerts": "window_end", "readings.rejected": None,
                             "per_minute.rejected": None, "alerts.rejected": None}


def test_a_transform_that_drops_or_derives_the_window_end_is_kept_by_position() -> None:
    vitals = json.loads((HERE / "vitals.json").read_text())
    alerts = vitals["analytics"][2]
    for changed in ({**alerts, "select": ["window_start", "patient", "reason"]},
                    {**alerts, "derive": {**alerts["derive"], "window_end": "window_start"}}):
        document = {**vitals, "analytics": vitals["analytics"][:2] + [changed]}
        assert sinks(document)["alerts"] is None
