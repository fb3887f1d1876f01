"""docs/architecture.md carries the state diagram generated from the lifecycle table, up to date."""

import re
from pathlib import Path

from burst_agent.lifecycle import TRANSITIONS, diagram

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def test_the_documented_state_diagram_is_the_generated_one():
    found = re.search(r"<!-- state-diagram:begin -->\n```mermaid\n(.*?)```\n<!-- state-diagram:end -->",
                      DOC.read_text(), re.S)
    assert found and found.group(1) == diagram()


def test_the_diagram_shows_every_state():
    text = diagram()
    assert all(f" {state.value}" in text for state in TRANSITIONS)
