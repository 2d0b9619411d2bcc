"""The call-sequence table of docs/ARCHITECTURE.md ("The call sequence of each phase"), read
for the tests that compare the calls a run makes with it."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def documented_sequences() -> dict[str, list[str]]:
    """Phase -> its calls in order, as the table writes them ("trainer /offload keep_weights")."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = text.split("<!-- call-sequence table")[1].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[3:]:
        phase, calls = [cell.strip() for cell in line.strip("|").split("|")]
        rows[phase] = [call.strip() for call in calls.split(";")]
    return rows
