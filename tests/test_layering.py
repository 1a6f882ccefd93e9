"""The rooms import in one direction only: schemas ← bus ← connectors ← synthetic ← agents
(docs/architecture.md).

`deploy` (starts a local Kafka) imports none of them; connectors' test kit and agents may use it
to find the local broker. Every Kafka client is made in `bus/clients.py`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each room and the rooms it may import, besides itself.
ALLOWED = {
    "schemas": set(),
    "bus": {"schemas"},
    "connectors": {"schemas", "bus", "deploy"},
    "synthetic": {"schemas", "connectors"},  # the register's feed format, to simulate the register
    "agents": {"schemas", "bus", "connectors", "synthetic", "deploy"},
    "deploy": set(),
}
CLIENT_CONSTRUCTOR = re.compile(r"\bAIOKafka(Consumer|Producer|AdminClient)\(")


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        rooms |= {name.split(".")[0] for name in names} & set(ALLOWED)
    return rooms


def _sources(room: str) -> list[Path]:
    return [p for p in (ROOT / room).rglob("*.py") if "deploy/kafka" not in p.as_posix()]


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_rooms_below_it(room):
    wrong = {
        f"{path.relative_to(ROOT)} imports {sorted(found)}"
        for path in _sources(room)
        if (found := _imported_rooms(path) - ALLOWED[room] - {room})
    }
    assert not wrong, sorted(wrong)


def test_the_layering_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from agents.config import get_settings\nimport connectors.api\n")
    assert _imported_rooms(bad) == {"agents", "connectors"}


def test_every_kafka_client_is_made_by_the_runtime_room():
    outside = [
        f"{path.relative_to(ROOT)}:{n}"
        for room in ALLOWED
        if room != "bus"
        for path in _sources(room)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if CLIENT_CONSTRUCTOR.search(line)
    ]
    assert not outside, outside
    made_in_bus = {p.name for p in _sources("bus") if CLIENT_CONSTRUCTOR.search(p.read_text())}
    assert made_in_bus == {"clients.py"}
