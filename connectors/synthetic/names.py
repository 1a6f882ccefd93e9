"""Small built-in lists of Norwegian-sounding names. Combinations are random: no real person's data."""

from __future__ import annotations

FEMALE_GIVEN_NAMES = (
    "Nora", "Emma", "Ella", "Maja", "Olivia", "Sofie", "Ingrid", "Leah", "Sara", "Frida",
    "Astrid", "Hedda", "Tiril", "Selma", "Amalie", "Ida", "Thea", "Live", "Mari", "Kari",
    "Anne", "Inger", "Liv", "Solveig", "Ragnhild", "Sigrid", "Hilde", "Marit", "Turid", "Åse",
)
MALE_GIVEN_NAMES = (
    "Jakob", "Emil", "Noah", "Oliver", "Filip", "William", "Lucas", "Henrik", "Aksel", "Isak",
    "Magnus", "Sander", "Tobias", "Elias", "Johannes", "Ola", "Per", "Lars", "Knut", "Arne",
    "Bjørn", "Olav", "Terje", "Geir", "Trond", "Svein", "Odd", "Håkon", "Eirik", "Sindre",
)
SURNAMES = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
    "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen", "Lund",
    "Sørensen", "Moen", "Gundersen", "Iversen", "Strand", "Solberg", "Svendsen", "Eide",
    "Knutsen", "Martinsen", "Paulsen", "Bakken", "Mathisen", "Lie", "Rønning", "Fjeldstad",
    "Brekke", "Vik", "Aasen", "Myhre", "Nygård", "Tveit", "Sæther", "Holm",
)


def given_name(gender: int, index: int) -> str:
    """gender 1 = male, 0 = female; index into the list modulo its length."""
    names = MALE_GIVEN_NAMES if gender == 1 else FEMALE_GIVEN_NAMES
    return names[index % len(names)]


def surname(index: int) -> str:
    return SURNAMES[index % len(SURNAMES)]
