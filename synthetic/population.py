"""The synthetic population as compact numpy columns (about 50 bytes per person).

Persons are rows; nothing is held as a Python object per person. `build_population`
lays out households (singles, couples, families with children) over the kommuner.
"""

from __future__ import annotations

import numpy as np

from synthetic.config import SyntheticConfig
from synthetic.geography import STREET_NAMES, Geography
from synthetic.identity_numbers import EPOCH, IdentityAllocator
from synthetic.names import FEMALE_GIVEN_NAMES, MALE_GIVEN_NAMES, SURNAMES

# status
RESIDENT, DEAD, EMIGRATED = 0, 1, 2
# civil status (sivilstand)
UNMARRIED, MARRIED, DIVORCED, WIDOWED = 0, 1, 2, 3
SIVILSTAND = ("ugift", "gift", "skilt", "enkeEllerEnkemann")
# address protection (adressebeskyttelse)
UNGRADED, CONFIDENTIAL, STRICTLY_CONFIDENTIAL = 0, 1, 2
ADRESSEBESKYTTELSE = ("ugradert", "fortrolig", "strengtFortrolig")
FEMALE, MALE = 0, 1
KJOENN = ("kvinne", "mann")
NOBODY = -1

COLUMNS = {
    "ident": np.int64,
    "d_number": np.bool_,
    "birth": np.int32,  # days since 1970-01-01
    "gender": np.int8,
    "status": np.int8,
    "kommune": np.int16,  # index into Geography.places
    "street": np.int16,
    "house": np.int16,
    "household": np.int32,
    "civil": np.int8,
    "spouse": np.int32,
    "mother": np.int32,
    "father": np.int32,
    "given": np.int16,
    "surname": np.int16,
    "protection": np.int8,
}

_CHUNK_PERSONS = 250_000
_HOUSEHOLD_SIZES = np.array([1, 2, 3, 4, 5, 6])
_HOUSEHOLD_SIZE_SHARES = np.array([0.40, 0.31, 0.13, 0.11, 0.04, 0.01])
# Age bands (start age) and weights for adults not living with children; tuned so the
# pyramid resembles Norway's (SSB 2024), not to match it.
_ADULT_AGE_BANDS = np.arange(18, 100, 2)
_ADULT_AGE_WEIGHTS = np.interp(
    _ADULT_AGE_BANDS, [18, 22, 28, 40, 50, 60, 70, 80, 90, 99], [2, 7, 7, 4, 8, 12, 11, 6, 1.5, 0.05]
)


class Population:
    """Columns of per-person state that grow by doubling; `size` rows are in use."""

    def __init__(self, geography: Geography, capacity: int) -> None:
        self.geography = geography
        self.identities = IdentityAllocator()
        self.size = 0
        self.households = 0
        self.columns = {name: np.zeros(capacity, dtype=dtype) for name, dtype in COLUMNS.items()}

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["columns"][name]
        except KeyError:
            raise AttributeError(name) from None

    def append(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """Add persons (columns not given are 0 / NOBODY) and return their row indexes."""
        count = len(next(iter(rows.values())))
        if self.size + count > len(self.ident):
            capacity = max(2 * len(self.ident), self.size + count)
            for name, column in self.columns.items():
                grown = np.zeros(capacity, dtype=column.dtype)
                grown[: self.size] = column[: self.size]
                self.columns[name] = grown
        new = np.arange(self.size, self.size + count)
        for name in ("spouse", "mother", "father"):
            self.columns[name][new] = NOBODY
        for name, values in rows.items():
            self.columns[name][new] = values
        self.size += count
        return new

    def new_household(self) -> int:
        self.households += 1
        return self.households - 1

    def resident_mask(self) -> np.ndarray:
        return self.status[: self.size] == RESIDENT

    def ages(self, today_days: int) -> np.ndarray:
        return (today_days - self.birth[: self.size]) // 365.25

    def nbytes(self) -> int:
        return sum(column.nbytes for column in self.columns.values())


def days_of(day) -> int:
    """A datetime.date as days since 1970-01-01."""
    return int((np.datetime64(day, "D") - EPOCH).astype(np.int64))


def build_population(config: SyntheticConfig, rng: np.random.Generator) -> Population:
    """Lay out `config.persons` persons in households, a chunk at a time to bound temporary memory."""
    population = Population(Geography(), capacity=int(config.persons * 1.1) + 16)
    remaining = config.persons
    while remaining > 0:
        chunk = min(remaining, _CHUNK_PERSONS)
        _add_households(population, config, rng, chunk)
        remaining -= chunk
    return population


def _add_households(population: Population, config: SyntheticConfig, rng: np.random.Generator, n: int) -> None:
    geography = population.geography
    first_row = population.size
    sizes = rng.choice(_HOUSEHOLD_SIZES, size=n // 2 + 1, p=_HOUSEHOLD_SIZE_SHARES)
    last = int(np.searchsorted(np.cumsum(sizes), n))
    sizes = sizes[: last + 1]
    sizes[-1] -= sizes.sum() - n
    households = len(sizes)
    adults = np.where(sizes == 1, 1, np.where(rng.random(households) < np.where(sizes == 2, 0.78, 0.85), 2, 1))
    has_children = sizes > adults

    household = np.repeat(np.arange(households), sizes)
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    position = np.arange(n) - start
    is_adult = position < adults[household]
    is_partner = (position == 1) & is_adult

    # Ages: parents around 41, other adults by band weights, partners near the first adult,
    # children (some of them grown up, still at home) at least 20 years younger than both parents.
    parent_age = np.clip(rng.normal(41, 8, households), 21, 65)
    band = rng.choice(_ADULT_AGE_BANDS, size=households, p=_ADULT_AGE_WEIGHTS / _ADULT_AGE_WEIGHTS.sum())
    head_age = np.where(has_children, parent_age, band + rng.random(households) * 2)
    age = head_age[household].copy()
    lowest_partner_age = np.where(has_children, 22, 18)[household[is_partner]]
    age[is_partner] = np.clip(age[is_partner] + rng.normal(0, 3, is_partner.sum()), lowest_partner_age, 100)
    youngest_adult = np.full(households, np.inf)
    np.minimum.at(youngest_adult, household[is_adult], age[is_adult])
    child = ~is_adult
    age[child] = rng.random(child.sum()) * np.minimum(25, youngest_adult[household[child]] - 20)
    today = days_of(config.start)
    birth = (today - (np.floor(age) + rng.random(n)) * 365.25).astype(np.int32)

    head_male = rng.random(households) < np.where(has_children & (adults == 1), 0.2, 0.5)
    gender = np.where(rng.random(n) < 0.513, MALE, FEMALE)
    gender[position == 0] = head_male[household[position == 0]]
    same_sex = rng.random(n) < 0.03
    partner_household = household[is_partner]
    gender[is_partner] = np.where(same_sex[is_partner], head_male[partner_household], 1 - head_male[partner_household])

    couple = adults == 2
    married_household = couple & (rng.random(households) < 0.6)
    civil = np.full(n, UNMARRIED, dtype=np.int8)
    civil[is_adult & married_household[household]] = MARRIED
    spouse = np.full(n, NOBODY, dtype=np.int32)
    married_heads = np.flatnonzero((position == 0) & married_household[household])
    spouse[married_heads] = first_row + married_heads + 1
    spouse[married_heads + 1] = first_row + married_heads
    single_adult = is_adult & ~couple[household]
    draw = rng.random(n)
    civil[single_adult & (age >= 70) & (draw < 0.4)] = WIDOWED
    civil[single_adult & (age >= 35) & (civil == UNMARRIED) & (draw > 0.7)] = DIVORCED

    mother = np.full(n, NOBODY, dtype=np.int32)
    father = np.full(n, NOBODY, dtype=np.int32)
    for adult_position in (0, 1):
        parent = start + adult_position
        valid = child & (adult_position < adults[household])
        is_mother = valid & (gender[np.minimum(parent, n - 1)] == FEMALE)
        mother[is_mother] = first_row + parent[is_mother]
        father[valid & ~is_mother] = first_row + parent[valid & ~is_mother]

    household_surname = rng.integers(0, len(SURNAMES), households)
    surname = household_surname[household]
    own_surname = is_partner & (rng.random(n) < 0.4)
    surname[own_surname] = rng.integers(0, len(SURNAMES), own_surname.sum())
    given = rng.integers(0, min(len(MALE_GIVEN_NAMES), len(FEMALE_GIVEN_NAMES)), n)

    protection_draw = rng.random(households)
    strict = 0.0002 * config.protection_scale
    confidential = 0.001 * config.protection_scale
    household_protection = np.where(
        protection_draw < strict,
        STRICTLY_CONFIDENTIAL,
        np.where(protection_draw < strict + confidential, CONFIDENTIAL, UNGRADED),
    )

    d_number = is_adult & (rng.random(n) < config.d_number_share)
    first_household = population.households
    population.append(
        {
            "ident": population.identities.allocate(birth, d_number),
            "d_number": d_number,
            "birth": birth,
            "gender": gender,
            "status": np.full(n, RESIDENT),
            "kommune": geography.sample(rng, households)[household],
            "street": rng.integers(0, len(STREET_NAMES), households)[household],
            "house": rng.integers(1, 150, households)[household],
            "household": first_household + household,
            "civil": civil,
            "spouse": spouse,
            "mother": mother,
            "father": father,
            "given": given,
            "surname": surname,
            "protection": household_protection[household],
        }
    )
    population.households += households
