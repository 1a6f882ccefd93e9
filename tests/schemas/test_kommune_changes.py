"""The reforms' data (schemas/data/kommune-changes.csv) against the 2024 snapshot."""

from __future__ import annotations

from datetime import date

from schemas.kommuner import kommuner, renumberings, successors


def test_every_retired_code_leads_to_codes_of_today_and_none_is_still_in_use():
    for old in renumberings():
        assert old not in kommuner(), old
        assert all(code in kommuner() for code in successors(old)), old


def test_the_two_reforms_retired_the_codes_the_domain_says():
    by_day: dict[date, set[str]] = {}
    for old, change in renumberings().items():
        by_day.setdefault(change.valid_from, set()).add(old)
    # 2020: 422 kommuner became 356, and 309 codes were retired (the others kept theirs);
    # 2024: 114 kommuner got new numbers.
    assert len(by_day[date(2024, 1, 1)]) == 114
    assert len(by_day[date(2020, 1, 1)]) == 309
    assert {old: successors(old) for old in ("5401", "5403", "3005", "1507", "0213", "0217", "1850", "1439")} == {
        "5401": ("5501",),  # Tromsø
        "5403": ("5601",),  # Alta
        "3005": ("3301",),  # Drammen
        "1507": ("1508", "1580"),  # Ålesund, split
        "0213": ("3207",),  # Ski, merged with Oppegård into Nordre Follo (3020), then 3207
        "0217": ("3207",),
        "1850": ("1806", "1875"),  # Tysfjord, split between Narvik and Hamarøy
        "1439": ("4602", "4649"),  # Vågsøy: Kinn, but Bryggja went to Stad (a border change, added by hand)
    }
