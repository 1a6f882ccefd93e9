"""Where synthetic persons live: kommune weights, synthetic streets and postnummer.

The kommune list is the dated SSB snapshot (`schemas.kommuner`). Populations are
APPROXIMATIONS: the ~30 largest kommuner carry rounded 2024 figures; the rest get a
fixed heavy-tailed (log-normal) draw scaled so Norway totals ~5.55 million. Good enough
for plausible shares, not for statistics. Streets and postnummer are invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.kommuner import kommuner

NORWAY_POPULATION = 5_550_000

# Rounded 2024 populations of the largest kommuner (approximate, for weighting only).
LARGEST_KOMMUNER = {
    "0301": 717_000,  # Oslo
    "4601": 291_000,  # Bergen
    "5001": 214_000,  # Trondheim
    "1103": 148_000,  # Stavanger
    "3201": 130_000,  # Bærum
    "4204": 116_000,  # Kristiansand
    "3301": 103_000,  # Drammen
    "3203": 96_000,  # Asker
    "3205": 92_000,  # Lillestrøm
    "3107": 84_000,  # Fredrikstad
    "1108": 83_000,  # Sandnes
    "5501": 78_000,  # Tromsø
    "1508": 67_000,  # Ålesund
    "3907": 65_000,  # Sandefjord
    "3207": 62_000,  # Nordre Follo
    "3105": 59_000,  # Sarpsborg
    "3905": 58_000,  # Tønsberg
    "4003": 56_000,  # Skien
    "1804": 53_000,  # Bodø
    "3103": 50_000,  # Moss
    "3909": 48_000,  # Larvik
    "4203": 46_000,  # Arendal
    "1149": 43_000,  # Karmøy
    "3209": 42_000,  # Ullensaker
    "1106": 38_000,  # Haugesund
    "4001": 37_000,  # Porsgrunn
    "3403": 33_000,  # Hamar
    "3411": 35_000,  # Ringsaker
    "3101": 31_000,  # Halden
    "4626": 39_000,  # Øygarden
}

# A fixed seed: the geography is the same whatever the population seed.
_TAIL_SEED = 131
_TAIL_MEDIAN = 4_500

_STREET_STEMS = (
    "Bjørke",
    "Furu",
    "Gran",
    "Eike",
    "Lønne",
    "Rogne",
    "Selje",
    "Hegg",
    "Older",
    "Hassel",
    "Fjell",
    "Fjord",
    "Myr",
    "Bekke",
    "Elve",
    "Skog",
    "Eng",
    "Åker",
    "Haug",
    "Strand",
    "Kirke",
    "Skole",
    "Stasjons",
    "Mølle",
    "Sag",
    "Brygge",
    "Tun",
    "Stabbur",
    "Løe",
    "Kvern",
    "Sol",
    "Måne",
    "Stjerne",
    "Nord",
    "Sør",
    "Vest",
    "Øst",
    "Ny",
    "Gamle",
    "Lia",
)
_STREET_SUFFIXES = ("veien", "gata", "bakken", "stien", "lia", "svingen", "tunet", "vegen")
STREET_NAMES = tuple(stem + suffix for stem in _STREET_STEMS for suffix in _STREET_SUFFIXES)


@dataclass(frozen=True)
class Place:
    """One kommune as the generator sees it (index = position in Geography.places)."""

    number: str
    name: str
    fylke_number: str
    fylke_name: str
    origin: int  # index of the snapshot kommune it descends from (postnummer survive reforms)


class Geography:
    """The kommune table plus weights; grows when a reform renumbers kommuner."""

    def __init__(self) -> None:
        self.places: list[Place] = [
            Place(k.number, k.name, k.fylke_number, k.fylke_name, i)
            for i, k in enumerate(sorted(kommuner().values(), key=lambda k: k.number))
        ]
        populations = _approximate_populations(self.places)
        self.weights = populations / populations.sum()
        self._cumulative = np.cumsum(self.weights)
        self.index = {place.number: i for i, place in enumerate(self.places)}
        # Snapshot index -> index of the kommune in force today (differs after a reform).
        self.current = np.arange(len(self.places), dtype=np.int16)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n indexes of kommuner in force, drawn by population weight."""
        return self.current[rng.choice(len(self.weights), size=n, p=self.weights)]

    def pick(self, u: float) -> int:
        """One kommune in force, by population weight, for a uniform draw u in [0, 1)."""
        return int(self.current[min(int(np.searchsorted(self._cumulative, u, side="right")), len(self.weights) - 1)])

    def add_renumbered(self, old_index: int, new_number: str, new_fylke_number: str) -> int:
        old = self.places[old_index]
        self.places.append(Place(new_number, old.name, new_fylke_number, old.fylke_name, old.origin))
        new_index = len(self.places) - 1
        self.index[new_number] = new_index
        self.current[old.origin] = new_index
        return new_index

    def address(self, kommune: int, street: int, house: int) -> dict:
        """The register-style address document for a synthetic address."""
        place = self.places[kommune]
        return {
            "adressenavn": STREET_NAMES[street],
            "husnummer": int(house),
            "postnummer": postnummer(place.origin, street),
            "poststed": place.name.upper(),
            "kommunenummer": place.number,
        }


def postnummer(kommune_index: int, street: int) -> str:
    """A synthetic, stable 4-digit postnummer: a few codes per kommune, not the real mapping."""
    return f"{(kommune_index * 25 + street % 5) % 9000 + 1000:04d}"


def _approximate_populations(places: list[Place]) -> np.ndarray:
    rng = np.random.default_rng(_TAIL_SEED)
    tail = rng.lognormal(mean=np.log(_TAIL_MEDIAN), sigma=0.9, size=len(places))
    tail = np.clip(tail, 200, 30_000)
    known = np.array([place.number in LARGEST_KOMMUNER for place in places])
    tail[known] = 0
    tail *= (NORWAY_POPULATION - sum(LARGEST_KOMMUNER.values())) / tail.sum()
    for i, place in enumerate(places):
        if known[i]:
            tail[i] = LARGEST_KOMMUNER[place.number]
    return tail
