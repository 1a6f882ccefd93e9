"""The synthetic population and its life-course simulation: determinism, plausibility, consistency."""

from collections import Counter
from datetime import date
from itertools import islice, pairwise

import numpy as np
import pytest

from connectors.folkeregister import feed_format as ff
from synthetic import Reform, Simulation, SyntheticConfig
from synthetic.population import MARRIED, NOBODY, RESIDENT, days_of


@pytest.fixture(scope="module")
def year_of_events():
    simulation = Simulation(SyntheticConfig(persons=60_000, seed=11))
    residents = int(simulation.population.resident_mask().sum())
    return residents, [document.document() for document in simulation.events(years=1)]


def test_same_seed_gives_the_same_feed_and_another_seed_another():
    def first_documents(seed):
        return [
            d.document() for d in islice(Simulation(SyntheticConfig(persons=3_000, seed=seed)).events(years=None), 500)
        ]

    assert first_documents(5) == first_documents(5)
    assert first_documents(5) != first_documents(6)


def test_population_is_spread_over_all_kommuner_with_the_cities_largest():
    simulation = Simulation(SyntheticConfig(persons=200_000, seed=2))
    population = simulation.population
    counts = np.bincount(population.kommune[: population.size], minlength=len(simulation.geography.places))
    numbers = [place.number for place in simulation.geography.places]
    share = dict(zip(numbers, counts / counts.sum(), strict=False))
    assert 0.11 < share["0301"] < 0.15  # Oslo ~13 %
    assert share["0301"] > share["4601"] > share["5001"] > share["1103"]
    assert np.median(counts / counts.sum()) < 0.003  # the many small kommuner are small
    assert (counts > 0).sum() > 340


def test_age_structure_is_plausible():
    simulation = Simulation(SyntheticConfig(persons=100_000, seed=2))
    ages = simulation.population.ages(days_of(simulation.config.start))
    assert 0.18 < (ages < 20).mean() < 0.30
    assert 0.10 < (ages >= 67).mean() < 0.22
    assert 0.02 < (ages >= 80).mean() < 0.07
    assert ages.max() < 105


def test_households_link_spouses_and_children_to_parents_at_the_same_address():
    population = Simulation(SyntheticConfig(persons=20_000, seed=4)).population
    rows = np.arange(population.size)
    married = rows[population.civil[rows] == MARRIED]
    spouses = population.spouse[married]
    assert len(married) > 3_000
    assert (population.spouse[spouses] == married).all()
    assert (population.household[spouses] == population.household[married]).all()
    children = rows[population.mother[rows] != NOBODY]
    mothers = population.mother[children]
    assert (population.gender[mothers] == 0).all()
    assert (population.household[mothers] == population.household[children]).all()
    assert (population.birth[mothers] < population.birth[children] - 18 * 365).all()


def test_yearly_event_rates_are_near_norways(year_of_events):
    residents, documents = year_of_events
    new = Counter(d["hendelsetype"] for d in documents if d["entitetsendring"] == ff.REGISTRERE_NY)

    def per_1000(hendelsetype):
        return 1000 * new[hendelsetype] / residents

    assert 8 < per_1000(ff.PERSON_ER_OPPRETTET) < 12
    assert 6 < per_1000(ff.PERSON_ER_DOED) < 10
    assert 14 < per_1000(ff.PERSON_ER_BOSATT) < 20
    assert 7 < per_1000(ff.PERSON_ER_UTFLYTTET) < 11
    assert 100 < per_1000(ff.ENDRING_I_BOSTEDSADRESSE) < 150
    assert 4 < per_1000(ff.ENDRING_I_NAVN) < 6.5
    assert 8 < per_1000(ff.ENDRING_I_SIVILSTAND) < 20
    between = [
        d
        for d in documents
        if d["hendelsetype"] == ff.ENDRING_I_BOSTEDSADRESSE
        and d["entitetsendring"] == ff.REGISTRERE_NY
        and d["opplysninger"]["forrigeBostedsadresse"]["kommunenummer"]
        != d["opplysninger"]["bostedsadresse"]["kommunenummer"]
    ]
    assert 0.35 < len(between) / new[ff.ENDRING_I_BOSTEDSADRESSE] < 0.6


def test_feed_is_in_sequence_and_time_order_with_known_or_deliberately_unusual_types(year_of_events):
    _, documents = year_of_events
    assert [d["sekvensnummer"] for d in documents] == list(range(1, len(documents) + 1))
    assert all(a["ajourholdstidspunkt"] <= b["ajourholdstidspunkt"] for a, b in pairwise(documents))
    unusual = [d for d in documents if d["hendelsetype"] in ff.UNUSUAL_TYPES]
    assert {d["hendelsetype"] for d in unusual} == set(ff.UNUSUAL_TYPES)
    assert 0.0005 < len(unusual) / len(documents) < 0.005


def test_corrections_and_annulments_refer_to_earlier_documents_and_annulled_moves_are_undone(year_of_events):
    _, documents = year_of_events
    earlier = {}
    kinds = Counter()
    for d in documents:
        if d["entitetsendring"] != ff.REGISTRERE_NY:
            kinds[d["entitetsendring"]] += 1
            target = earlier[d["gjelderHendelsesdokument"]]  # KeyError: refers to nothing earlier
            assert target["hendelsetype"] == d["hendelsetype"]
        earlier[d["hendelsesdokument"]] = d
    assert kinds[ff.KORRIGERE] > 20 and kinds[ff.ANNULLERE] > 5

    # After an annulled move the person's next move starts from the address before the annulled one.
    next_move_from = {}
    checked = 0
    for d in reversed(documents):
        person = d["folkeregisteridentifikator"]
        if d["hendelsetype"] != ff.ENDRING_I_BOSTEDSADRESSE:
            continue
        if d["entitetsendring"] == ff.ANNULLERE and person in next_move_from:
            annulled = earlier[d["gjelderHendelsesdokument"]]
            assert next_move_from[person] == annulled["opplysninger"]["forrigeBostedsadresse"]
            checked += 1
        if d["entitetsendring"] == ff.REGISTRERE_NY:
            next_move_from[person] = d["opplysninger"]["forrigeBostedsadresse"]
        else:
            next_move_from.pop(person, None)
    assert checked > 0


def test_address_protection_is_carried_on_every_document_and_scales_for_demos():
    plain = Simulation(SyntheticConfig(persons=50_000, seed=1)).population
    scaled = Simulation(SyntheticConfig(persons=50_000, seed=1, protection_scale=50)).population
    assert (plain.protection[: plain.size] > 0).mean() < 0.004
    shares = np.bincount(scaled.protection[: scaled.size], minlength=3) / scaled.size
    assert 0.02 < shares[1] < 0.09 and 0.003 < shares[2] < 0.02

    documents = list(Simulation(SyntheticConfig(persons=5_000, seed=1, protection_scale=50)).events(years=1))
    levels = Counter(d.adressebeskyttelse for d in documents)
    assert levels["fortrolig"] and levels["strengtFortrolig"]
    changes = [d for d in documents if d.hendelsetype == ff.ENDRING_I_ADRESSEBESKYTTELSE]
    assert changes and all(d.adressebeskyttelse == d.opplysninger["gradering"] for d in changes)


def test_reform_day_renumbers_every_resident_of_one_fylke_at_once():
    config = SyntheticConfig(persons=20_000, seed=9, reform=Reform(fylke="46", new_fylke="48", day=date(2024, 2, 1)))
    simulation = Simulation(config)
    population = simulation.population
    fylke_46 = {i for i, place in enumerate(simulation.geography.places) if place.fylke_number == "46"}
    documents = list(simulation.events(years=0.25))  # Jan-Mar 2024

    reform = [d for d in documents if d.hendelsetype == ff.ENDRING_I_BOSTEDSADRESSE_VED_KOMMUNEREGULERING]
    assert len(reform) > 1_500
    assert {d.ajourholdstidspunkt for d in reform} == {"2024-02-01T00:00:00Z"}
    assert [d.sekvensnummer for d in reform] == list(
        range(reform[0].sekvensnummer, reform[0].sekvensnummer + len(reform))
    )
    for d in reform:
        old, new = d.opplysninger["forrigeKommunenummer"], d.opplysninger["kommunenummer"]
        assert (
            old.startswith("46") and new == "48" + old[2:] and d.opplysninger["bostedsadresse"]["kommunenummer"] == new
        )
    later_moves = [
        d
        for d in documents
        if d.hendelsetype == ff.ENDRING_I_BOSTEDSADRESSE and d.sekvensnummer > reform[-1].sekvensnummer
    ]
    assert later_moves and not any(
        d.opplysninger.get("bostedsadresse", {}).get("kommunenummer", "").startswith("46") for d in later_moves
    )
    assert not np.isin(population.kommune[: population.size], list(fylke_46)).any()


def test_a_past_reforms_address_events_go_to_every_resident_of_a_renumbered_kommune_under_its_old_code():
    """The 2024 reform as the register sent it (bench/bench_national.py's reform day): the population
    lives under today's codes; each resident of a kommune that had another code gets one event."""
    simulation = Simulation(SyntheticConfig(persons=20_000, seed=9))
    previous = {"5501": "5401", "3301": "3005"}  # Tromsø, Drammen: today's code -> the one before 1 January 2024
    places = simulation.geography.places
    p = simulation.population
    residents = Counter(places[k].number for k in p.kommune[: p.size][p.status[: p.size] == RESIDENT])
    documents = list(simulation.renumbering_events(previous, date(2024, 1, 1)))
    assert documents and all(residents[c] for c in previous)

    assert Counter(d.opplysninger["kommunenummer"] for d in documents) == {c: residents[c] for c in previous}
    for d in documents:
        assert d.hendelsetype == ff.ENDRING_I_BOSTEDSADRESSE_VED_KOMMUNEREGULERING
        assert d.ajourholdstidspunkt == "2024-01-01T00:00:00Z" and d.opplysninger["gyldigFra"] == "2024-01-01"
        assert d.opplysninger["forrigeKommunenummer"] == previous[d.opplysninger["kommunenummer"]]
        assert d.opplysninger["bostedsadresse"]["kommunenummer"] == d.opplysninger["kommunenummer"]
    assert [d.sekvensnummer for d in documents] == list(range(1, len(documents) + 1))
    later = next(simulation.events(years=None))  # the feed goes on after them
    assert later.sekvensnummer == len(documents) + 1


def test_every_historic_move_correction_maps_to_a_valid_move_with_the_corrected_moves_addresses(year_of_events):
    """korrigereHistorisk carries the whole corrected element, as the register's does: it becomes a
    Move correction that passes validation (before, only the date came, and ingest dead-lettered it
    as relation.missing_new_address)."""
    from connectors.folkeregister.mapping import to_record
    from schemas.validation import validate

    _, documents = year_of_events
    earlier = {d["hendelsesdokument"]: d for d in documents}
    historic = [d for d in documents if d["entitetsendring"] == ff.KORRIGERE_HISTORISK]
    assert historic, "the simulator emits historic corrections"
    for document in historic:
        corrected = earlier[document["gjelderHendelsesdokument"]]["opplysninger"]
        event_type, record = to_record(document)
        assert event_type == "Move" and record["envelope"]["changeKind"] == "correction"
        assert [f.code for f in validate(event_type, record, now=record["envelope"]["time"])] == []
        assert record["newAddress"]["streetName"] == corrected["bostedsadresse"]["adressenavn"]
        assert record["movedDate"].isoformat() == document["opplysninger"]["flyttedato"]
