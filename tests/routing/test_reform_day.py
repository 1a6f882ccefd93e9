"""Reform day: kommuner renumbered, merged and split (docs/reform-day.md).

Routing without Kafka: a subscription to today's code gets the events dated before the reform,
which carry the code of then; a reform's renumbering is a move within the kommune; a split code
reaches no heir. Then `samband subscriptions renumber` against the bus's subscriptions topic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import yaml
from routing_events import address, event, synthetic_number
from subscription_factory import subscription

from agents.routing.index import RoutingIndex
from agents.routing.router import PersonState, Router
from agents.subscriptions import renumber
from agents.subscriptions.audit import AuditLog
from agents.subscriptions.store import read_all
from bus.topics import topic_names
from schemas.moves import move_scope, scope_for

ADULT = synthetic_number(5, 6, 71, 300)
PERSON = "p" * 32  # a pseudonym
DEATH = {"Death": ["deathDate"]}
MOVE = {"Move": ["scope", "newAddress"]}


def _router(*subs) -> Router:
    index = RoutingIndex()
    for sub in subs:
        index.put(sub)
    return Router(index)


def _death(kommune: str, day: date) -> dict:
    return event("Death", ADULT, [kommune], deathDate=day)


def test_a_subscription_to_todays_code_gets_the_events_dated_before_the_reform():
    router = _router(
        subscription("tromso", ["5501"], ["Death"], DEATH),
        subscription("nordre-follo", ["3207"], ["Death"], DEATH),  # Ski and Oppegård (2019), 3020 (2020-2023)
        subscription("oslo", ["0301"], ["Death"], DEATH),
    )
    for kommune, day, expected in [
        ("5401", date(2023, 12, 31), ["tromso"]),  # Tromsø's code of 2020-2023
        ("1902", date(2019, 6, 1), ["tromso"]),  # and of before 2020
        ("5501", date(2024, 1, 1), ["tromso"]),
        ("0213", date(2019, 3, 1), ["nordre-follo"]),  # Ski
        ("0217", date(2019, 3, 1), ["nordre-follo"]),  # Oppegård
        ("3020", date(2023, 3, 1), ["nordre-follo"]),
        ("3005", date(2023, 3, 1), []),  # Drammen: nobody here subscribes to it
    ]:
        result = router.route("Death", _death(kommune, day), PERSON, PersonState(), None)
        assert sorted(result.recipients) == expected, (kommune, result.recipients)


def test_a_split_code_reaches_none_of_its_heirs():
    # Ålesund's 1507 became Ålesund 1508 and Haram 1580: an event with 1507 may be either one's.
    router = _router(
        subscription("alesund", ["1508"], ["Death"], DEATH), subscription("haram", ["1580"], ["Death"], DEATH)
    )
    result = router.route("Death", _death("1507", date(2023, 5, 1)), PERSON, PersonState(), None)
    assert result.recipients == []


def test_the_reform_days_address_change_is_a_move_within_the_kommune():
    reform_move = event(
        "Move",
        ADULT,
        ["5401", "5501"],
        previousAddress=address("5401", "Storgata", 1),
        newAddress=address("5501", "Storgata", 1),
        scope="withinKommune",
        movedDate=date(2024, 1, 1),
    )
    router = _router(
        subscription("within", ["5501"], ["Move"], MOVE, predicates={"move_scope": ["within"]}),
        subscription("into", ["5501"], ["Move"], MOVE, predicates={"move_scope": ["into"]}),
        subscription("out-of", ["5501"], ["Move"], MOVE, predicates={"move_scope": ["outOf"]}),
    )
    result = router.route("Move", reform_move, PERSON, PersonState(), None)
    assert result.recipients == ["within"]


def test_a_move_between_two_kommuner_that_later_merged_stays_a_move_between():
    # Ski to Oppegård in 2019: two kommuner then, though both became Nordre Follo.
    assert move_scope("0213", "0217") == "betweenKommuner"
    assert scope_for("0213", "0217", "0217") == "into"
    assert move_scope("3020", "3207") == "withinKommune"  # Nordre Follo renumbered in 2024


def _planned(*kommuner: str) -> renumber.Rescoped:
    [planned] = renumber.plan([subscription("s", list(kommuner), ["Death"], DEATH)])
    return planned


def test_the_plan_follows_every_reform_and_says_what_a_merger_adds():
    both = _planned("5401", "5501")  # the old code and the new one: one code after
    assert (both.kommuner, both.steps) == (["5501"], ["5401 Tromsø -> 5501 Tromsø (2024-01-01)"])
    ski = _planned("0213")
    assert ski.kommuner == ["3207"] and ski.widened == ["0217 Oppegård"]
    assert _planned("0213", "0217").widened == []  # it had both already
    haram = _planned("1534", "0301")  # merged into Ålesund in 2020, split out again in 2024
    assert haram.kommuner == ["1534", "0301"] and not haram.changed
    assert haram.split == [
        "1534 Haram -> 1507 Ålesund (2020-01-01), split into 1508 Ålesund and 1580 Haram (2024-01-01)"
    ]
    assert renumber.plan([subscription("today", ["0301"], ["Death"], DEATH)]) == []


def _sub(sub_id: str, kommuner) -> dict:
    return json.loads(subscription(sub_id, kommuner, ["Death"], DEATH).to_json())


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "subscriptions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_renumber_plans_then_moves_every_subscription_to_todays_codes_in_one_audited_write(
    kafka_bootstrap, worker_env, tmp_path
):
    names = topic_names(worker_env["SAMBAND_APP_ID"])
    subs = {
        "tromso-helse": ["5401", "0301"],  # made in 2023: Tromsø's code then, and Oslo's
        "ski-skole": ["0213"],  # made in 2019: Ski, merged with Oppegård into 3020, now 3207
        "alesund-bibliotek": ["1507"],  # split in 2024
        "oslo-skole": ["0301"],
        "nasjonal": "all",
    }
    (tmp_path / "subs").mkdir()
    for sub_id, kommuner in subs.items():
        (tmp_path / "subs" / f"{sub_id}.yaml").write_text(yaml.safe_dump(_sub(sub_id, kommuner)))
    assert _cli(worker_env, "apply", str(tmp_path / "subs")).returncode == 0
    before = await read_all(kafka_bootstrap, names.subscriptions)

    planned = _cli(worker_env, "renumber", "--plan")
    assert planned.returncode == 0, planned.stderr
    assert await read_all(kafka_bootstrap, names.subscriptions) == before, "--plan writes nothing"
    lines = planned.stdout
    assert "tromso-helse:\n  5401 Tromsø -> 5501 Tromsø (2024-01-01)\n" in lines
    assert "ski-skole:\n  0213 Ski -> 3020 Nordre Follo (2020-01-01) -> 3207 Nordre Follo (2024-01-01)\n" in lines
    assert "now also covers, merged into the same kommune: 0217 Oppegård" in lines
    assert (
        "alesund-bibliotek:\n  1507 Ålesund, split into 1508 Ålesund and 1580 Haram (2024-01-01); left as it is"
    ) in lines
    assert "oslo-skole" not in lines and "nasjonal" not in lines
    assert "would renumber 2 subscription(s); 1 with a split kommune to change by hand" in lines

    applied = _cli(worker_env, "renumber")
    assert applied.returncode == 0, applied.stderr
    assert "renumbered 2 subscription(s); 1 with a split kommune to change by hand" in applied.stdout
    assert "change the files too" in applied.stdout
    after = {k: json.loads(v)["kommuner"] for k, v in (await read_all(kafka_bootstrap, names.subscriptions)).items()}
    assert after == {**subs, "tromso-helse": ["5501", "0301"], "ski-skole": ["3207"]}
    audit = [e for e in await AuditLog(kafka_bootstrap, names.audit).entries() if e["action"] == "renumber"]
    assert sorted((e["subscription"], e["detail"]) for e in audit) == [
        (
            "ski-skole",
            "0213 Ski -> 3020 Nordre Follo (2020-01-01) -> 3207 Nordre Follo (2024-01-01); now also covers 0217 Oppegård",
        ),
        ("tromso-helse", "5401 Tromsø -> 5501 Tromsø (2024-01-01)"),
    ]
    table = subprocess.run(
        [sys.executable, "-m", "agents.cli", "audit"], env=worker_env, capture_output=True, text=True, timeout=60
    )
    assert "renumber" in table.stdout and "5401 Tromsø -> 5501 Tromsø (2024-01-01)" in table.stdout  # its detail
    again = _cli(worker_env, "renumber")
    assert again.stdout.rstrip().endswith("renumbered 0 subscription(s); 1 with a split kommune to change by hand")
    assert "change the files too" not in again.stdout
