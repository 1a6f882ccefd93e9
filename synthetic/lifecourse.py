"""The life-course simulation: a stream of Folkeregister-style event documents.

Each simulated month draws how many events of each kind happen (Poisson around the
yearly rates times the resident count), picks the persons by rejection sampling over
the numpy columns, spreads the events over the month and applies them in time order.
Events stream out one by one; only the population's columns and a bounded window of
recent documents (for corrections and annulments) are kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta

import numpy as np

from connectors.folkeregister import feed_format as ff
from synthetic.config import SyntheticConfig
from synthetic.geography import STREET_NAMES
from synthetic.identity_numbers import format_identity
from synthetic.names import FEMALE_GIVEN_NAMES, SURNAMES, given_name, surname
from synthetic.population import (
    ADRESSEBESKYTTELSE,
    CONFIDENTIAL,
    DEAD,
    DIVORCED,
    EMIGRATED,
    FEMALE,
    KJOENN,
    MALE,
    MARRIED,
    NOBODY,
    RESIDENT,
    SIVILSTAND,
    STRICTLY_CONFIDENTIAL,
    UNGRADED,
    WIDOWED,
    Population,
    build_population,
    days_of,
)

COUNTRIES = ("SWE", "POL", "LTU", "UKR", "DEU", "SYR", "ERI", "PHL", "IND", "DNK")
RULE_2032_FROM_YEAR = 2032
_RECENT_WINDOW = 5000
_DAY = 86_400


class Simulation:
    """A synthetic Norway: `events(years)` continues the simulation where it stopped."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.population: Population = build_population(config, self.rng)
        self.geography = self.population.geography
        self.last_seq = np.zeros(len(self.population.ident), dtype=np.int64)
        self.month_start = config.start.replace(day=1)
        self.sequence = 0
        self._recent: deque[tuple] = deque(maxlen=_RECENT_WINDOW)
        self._annulled: set[int] = set()
        self._reform_done = False
        # Per-kind handler and expected count per resident per year, in a fixed order.
        rates = config.rates
        self._kinds: list[tuple[Callable, float]] = [
            (self._birth, rates.births),
            (self._death, rates.deaths),
            (self._move, rates.moves),
            (self._immigration, rates.immigration),
            (self._emigration, rates.emigration),
            (self._marriage, rates.marriages),
            (self._divorce, rates.divorces),
            (self._name_change, rates.name_changes),
            (self._address_without_move, rates.address_change_without_move),
            (self._parental_responsibility, rates.parental_responsibility),
            (self._shared_residence, rates.shared_residence),
            (self._address_protection, rates.new_address_protection * config.protection_scale),
            (self._correction, rates.corrections),
            (self._annulment, rates.annulments),
        ]

    # ---------------------------------------------------------------- driving

    def events(self, years: float | None = 1.0) -> Iterator[ff.EventDocument]:
        """Event documents of the next `years` (None: forever), in sequence order."""
        months = None if years is None else round(years * 12)
        done = 0
        while months is None or done < months:
            yield from self._month()
            done += 1

    def _month(self) -> Iterator[ff.EventDocument]:
        start = self.month_start
        end = (start + timedelta(days=32)).replace(day=1)
        start_s, end_s = days_of(start) * _DAY, days_of(end) * _DAY
        residents = int(np.count_nonzero(self.population.status[: self.population.size] == RESIDENT))
        d_numbers = int(np.count_nonzero(self.population.d_number[: self.population.size] & self._resident_rows()))

        expected = [rate * residents / 12 for _, rate in self._kinds]
        expected.append(self.config.rates.d_number_to_fnr * d_numbers / 12)
        expected.append(self.config.unusual_type_share * sum(expected))
        handlers = [handler for handler, _ in self._kinds] + [self._d_number_to_fnr, self._unusual]
        counts = self.rng.poisson(expected)
        kind = np.repeat(np.arange(len(handlers)), counts)
        subjects = np.concatenate(
            [self._subjects(handler, int(n)) for handler, n in zip(handlers, counts, strict=False)]
        )
        times = self.rng.integers(start_s, end_s, len(kind))
        aux = self.rng.random((len(kind), 3))
        actions = [(int(t), h) for t, h in zip(times, kind, strict=False)]

        reform = self.config.reform
        reform_s = days_of(reform.day) * _DAY if reform and not self._reform_done else None
        order = np.argsort(times, kind="stable")
        for i in order:
            if reform_s is not None and reform_s <= times[i]:
                yield from self._reform(reform_s)
                reform_s = None
            when, h = actions[i]
            yield from handlers[h](int(subjects[i]), when, aux[i])
        if reform_s is not None and reform_s < end_s:
            yield from self._reform(reform_s)
        self.month_start = end

    def _resident_rows(self) -> np.ndarray:
        return self.population.status[: self.population.size] == RESIDENT

    def _subjects(self, handler: Callable, n: int) -> np.ndarray:
        """Persons an event kind happens to (age-weighted where it matters); -1 where the handler picks."""
        if handler in (self._immigration, self._correction, self._annulment):
            return np.full(n, NOBODY, dtype=np.int64)
        weight = {
            self._birth: lambda age, rows: ((age >= 18) & (age < 46) & (self.population.gender[rows] == FEMALE)) * 1.0,
            self._death: lambda age, rows: np.minimum(1.0, np.exp(0.09 * (age - 95))),
            self._move: lambda age, rows: np.where(age < 18, 0.0, np.where(age < 35, 1.0, 0.35)),
            self._emigration: lambda age, rows: np.where(age < 18, 0.1, np.where(age < 45, 1.0, 0.2)),
            self._marriage: lambda age, rows: (
                ((age >= 22) & (age < 70) & (self.population.civil[rows] != MARRIED)) * 1.0
            ),
            self._divorce: lambda age, rows: (self.population.civil[rows] == MARRIED) * 1.0,
            self._parental_responsibility: lambda age, rows: (age < 18) * 1.0,
            self._shared_residence: lambda age, rows: (age < 18) * 1.0,
            self._d_number_to_fnr: lambda age, rows: self.population.d_number[rows] * 1.0,
        }.get(handler)
        return self._draw_residents(n, weight)

    def _draw_residents(self, n: int, weight) -> np.ndarray:
        population = self.population
        today = days_of(self.month_start)
        found: list[np.ndarray] = []
        missing = n
        attempts = 0
        while missing > 0 and attempts < 200:
            attempts += 1
            rows = self.rng.integers(0, population.size, min(50 * missing + 64, 2_000_000))
            rows = rows[population.status[rows] == RESIDENT]
            if weight is not None:
                age = (today - population.birth[rows]) / 365.25
                rows = rows[self.rng.random(len(rows)) < weight(age, rows)]
            found.append(rows[:missing])
            missing -= len(found[-1])
        chosen = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
        return np.concatenate([chosen, np.full(missing, NOBODY)]).astype(np.int64)

    # ---------------------------------------------------------------- helpers

    def _emit(
        self,
        person: int,
        hendelsetype: str,
        opplysninger: dict,
        when: int,
        *,
        entitetsendring: str = ff.REGISTRERE_NY,
        gjelder: str | None = None,
    ) -> ff.EventDocument:
        self.sequence += 1
        seq = self.sequence
        self.last_seq[person] = seq
        population = self.population
        return ff.EventDocument(
            sekvensnummer=seq,
            hendelsesdokument=ff.document_id(self.config.seed, seq),
            hendelsetype=hendelsetype,
            folkeregisteridentifikator=format_identity(population.ident[person]),
            persondokument=ff.document_id(self.config.seed, seq, "person"),
            ajourholdstidspunkt=datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            entitetsendring=entitetsendring,
            adressebeskyttelse=ADRESSEBESKYTTELSE[population.protection[person]],
            opplysninger=opplysninger,
            gjelderHendelsesdokument=gjelder,
        )

    def _remember(self, document: ff.EventDocument, person: int, previous: tuple) -> ff.EventDocument:
        """Keep a recent document so a later correction or annulment can refer to it (and, for a
        move, the addresses it recorded: a historic correction repeats them)."""
        self._recent.append(
            (
                document.sekvensnummer,
                document.hendelsesdokument,
                person,
                document.hendelsetype,
                previous,
                document.opplysninger,
            )
        )
        return document

    def _address(self, person: int) -> dict:
        p = self.population
        return self.geography.address(int(p.kommune[person]), int(p.street[person]), int(p.house[person]))

    def _name(self, person: int) -> dict:
        p = self.population
        return {
            "fornavn": given_name(int(p.gender[person]), int(p.given[person])),
            "etternavn": surname(int(p.surname[person])),
        }

    def _age(self, person: int, when: int) -> float:
        return (when // _DAY - int(self.population.birth[person])) / 365.25

    def _ident(self, person: int) -> str | None:
        return None if person == NOBODY else format_identity(self.population.ident[person])

    def _alive(self, person: int) -> bool:
        return person != NOBODY and self.population.status[person] == RESIDENT

    def _new_identity(self, birth_day: int, d_number: bool, when: int) -> int:
        rule_2032 = datetime.fromtimestamp(when, UTC).year >= RULE_2032_FROM_YEAR
        return int(
            self.population.identities.allocate(np.array([birth_day]), np.array([d_number]), rule_2032=rule_2032)[0]
        )

    def _add_person(self, row: dict) -> int:
        person = int(self.population.append({key: np.array([value]) for key, value in row.items()})[0])
        if person >= len(self.last_seq):
            grown = np.zeros(len(self.population.ident), dtype=np.int64)
            grown[: len(self.last_seq)] = self.last_seq
            self.last_seq = grown
        return person

    def _relocate(self, person: int, kommune: int, street: int, house: int, household: int) -> tuple:
        p = self.population
        previous = (int(p.kommune[person]), int(p.street[person]), int(p.house[person]), int(p.household[person]))
        p.kommune[person], p.street[person], p.house[person], p.household[person] = kommune, street, house, household
        return previous

    def _move_to(self, person: int, kommune: int, street: int, house: int, household: int, when: int, lag_days: int):
        previous_address = self._address(person)
        previous = self._relocate(person, kommune, street, house, household)
        flyttedato = _iso_date(when // _DAY - lag_days)
        opplysninger = {
            "flyttedato": flyttedato,
            "forrigeBostedsadresse": previous_address,
            "bostedsadresse": self._address(person),
        }
        return self._remember(self._emit(person, ff.ENDRING_I_BOSTEDSADRESSE, opplysninger, when), person, previous)

    def _civil_change(self, person: int, civil: int, other: int, when: int) -> ff.EventDocument:
        p = self.population
        previous = SIVILSTAND[p.civil[person]]
        p.civil[person] = civil
        opplysninger = {
            "sivilstand": SIVILSTAND[civil],
            "forrigeSivilstand": previous,
            "gyldigFra": _iso_date(when // _DAY),
            "relatertVedSivilstand": self._ident(other),
        }
        return self._emit(person, ff.ENDRING_I_SIVILSTAND, opplysninger, when)

    # ---------------------------------------------------------------- event kinds

    def _birth(self, mother: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(mother) or not 18 <= self._age(mother, when) < 46:
            return
        spouse = int(p.spouse[mother])
        father = spouse if self._alive(spouse) else NOBODY
        day = when // _DAY - int(aux[0] * 3)
        gender = MALE if aux[1] < 0.513 else FEMALE
        child = self._add_person(
            {
                "ident": self._new_identity(day, False, when),
                "birth": day,
                "gender": gender,
                "status": RESIDENT,
                "kommune": p.kommune[mother],
                "street": p.street[mother],
                "house": p.house[mother],
                "household": p.household[mother],
                "mother": mother,
                "father": father,
                "given": int(aux[2] * len(FEMALE_GIVEN_NAMES)),
                "surname": p.surname[mother],
                "protection": p.protection[mother],
            }
        )
        yield self._emit(
            child,
            ff.PERSON_ER_OPPRETTET,
            {
                "foedselsdato": _iso_date(day),
                "kjoenn": KJOENN[gender],
                "navn": self._name(child),
                "identifikasjonsnummertype": "foedselsnummer",
                "bostedsadresse": self._address(child),
                "mor": self._ident(mother),
                "far": self._ident(father),
            },
            when,
        )

    def _death(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(person):
            return
        p.status[person] = DEAD
        yield self._emit(person, ff.PERSON_ER_DOED, {"doedsdato": _iso_date(when // _DAY - int(aux[0] * 4))}, when)
        spouse = int(p.spouse[person])
        if p.civil[person] == MARRIED and self._alive(spouse):
            p.spouse[spouse] = NOBODY
            yield self._civil_change(spouse, WIDOWED, person, when)

    def _move(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(person):
            return
        kommune = self.geography.pick(aux[0]) if aux[1] < self.config.move_between_share else int(p.kommune[person])
        street, house = int(aux[2] * len(STREET_NAMES)), 1 + int(aux[0] * 7919) % 149
        household = p.new_household()
        lag = int(aux[1] * 1000) % 14
        yield self._move_to(person, kommune, street, house, household, when, lag)
        spouse = int(p.spouse[person])
        if self._alive(spouse) and p.household[spouse] != household:
            yield self._move_to(spouse, kommune, street, house, household, when, lag)

    def _immigration(self, _: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        returning = NOBODY
        if aux[0] < self.config.return_migration_share:
            candidates = self.rng.integers(0, p.size, 200)
            emigrated = candidates[p.status[candidates] == EMIGRATED]
            returning = int(emigrated[0]) if len(emigrated) else NOBODY
        day = when // _DAY
        kommune = self.geography.pick(aux[1])
        street, house = int(aux[2] * len(STREET_NAMES)), 1 + int(aux[1] * 7919) % 149
        if returning != NOBODY:
            person = returning
            p.status[person] = RESIDENT
            self._relocate(person, kommune, street, house, p.new_household())
        else:
            age = float(np.clip(self.rng.normal(30, 10), 0, 80))
            birth = day - int(age * 365.25)
            d_number = bool(aux[2] < self.config.immigrant_d_number_share)
            gender = MALE if aux[0] < 0.55 else FEMALE
            person = self._add_person(
                {
                    "ident": self._new_identity(birth, d_number, when),
                    "d_number": d_number,
                    "birth": birth,
                    "gender": gender,
                    "status": RESIDENT,
                    "kommune": kommune,
                    "street": street,
                    "house": house,
                    "household": p.new_household(),
                    "given": int(aux[1] * 997) % len(FEMALE_GIVEN_NAMES),
                    "surname": int(aux[2] * 991) % len(SURNAMES),
                }
            )
        yield self._emit(
            person,
            ff.PERSON_ER_BOSATT,
            {
                "foedselsdato": _iso_date(int(p.birth[person])),
                "kjoenn": KJOENN[p.gender[person]],
                "navn": self._name(person),
                "identifikasjonsnummertype": "dNummer" if p.d_number[person] else "foedselsnummer",
                "innflyttetFra": COUNTRIES[int(aux[0] * 1009) % len(COUNTRIES)],
                "innflyttingsdato": _iso_date(day - int(aux[1] * 30)),
                "bostedsadresse": self._address(person),
            },
            when,
        )

    def _emigration(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        if not self._alive(person):
            return
        previous_address = self._address(person)
        self.population.status[person] = EMIGRATED
        yield self._emit(
            person,
            ff.PERSON_ER_UTFLYTTET,
            {
                "utflyttingsdato": _iso_date(when // _DAY - int(aux[0] * 30)),
                "utflyttetTil": COUNTRIES[int(aux[1] * len(COUNTRIES))],
                "forrigeBostedsadresse": previous_address,
            },
            when,
        )

    def _marriage(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(person) or p.civil[person] == MARRIED:
            return
        partner = self._find_partner(person, when, same_sex=aux[0] < 0.03)
        if partner == NOBODY:
            return
        p.spouse[person], p.spouse[partner] = partner, person
        yield self._civil_change(person, MARRIED, partner, when)
        yield self._civil_change(partner, MARRIED, person, when)
        if p.household[partner] != p.household[person]:
            yield self._move_to(
                partner,
                int(p.kommune[person]),
                int(p.street[person]),
                int(p.house[person]),
                int(p.household[person]),
                when,
                int(aux[1] * 30),
            )

    def _find_partner(self, person: int, when: int, *, same_sex: bool) -> int:
        p = self.population
        rows = self.rng.integers(0, p.size, 400)
        gender = p.gender[person] if same_sex else 1 - p.gender[person]
        age_gap = np.abs(p.birth[rows] - p.birth[person]) / 365.25
        adult = (when // _DAY - p.birth[rows]) / 365.25 >= 20
        fits = (
            (p.status[rows] == RESIDENT)
            & (p.civil[rows] != MARRIED)
            & (p.gender[rows] == gender)
            & (age_gap < 10)
            & adult
        )
        fits &= rows != person
        return int(rows[fits][0]) if fits.any() else NOBODY

    def _divorce(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        spouse = int(p.spouse[person])
        if not self._alive(person) or p.civil[person] != MARRIED or not self._alive(spouse):
            return
        p.spouse[person] = p.spouse[spouse] = NOBODY
        yield self._civil_change(person, DIVORCED, spouse, when)
        yield self._civil_change(spouse, DIVORCED, person, when)
        if p.household[spouse] == p.household[person]:
            street, house = int(aux[0] * len(STREET_NAMES)), 1 + int(aux[1] * 149)
            yield self._move_to(
                spouse, int(p.kommune[spouse]), street, house, p.new_household(), when, int(aux[2] * 60)
            )

    def _name_change(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(person):
            return
        previous_name, previous = self._name(person), (int(p.given[person]), int(p.surname[person]))
        if aux[0] < 0.7:
            p.surname[person] = int(aux[1] * len(SURNAMES))
        else:
            p.given[person] = int(aux[1] * len(FEMALE_GIVEN_NAMES))
        opplysninger = {"forrigeNavn": previous_name, "navn": self._name(person), "gyldigFra": _iso_date(when // _DAY)}
        yield self._remember(self._emit(person, ff.ENDRING_I_NAVN, opplysninger, when), person, previous)

    def _address_without_move(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        if not self._alive(person):
            return
        previous_address = self._address(person)
        self.population.street[person] = int(aux[0] * len(STREET_NAMES))
        yield self._emit(
            person,
            ff.ENDRING_I_BOSTEDSADRESSE_UTEN_FLYTTING,
            {
                "gyldigFra": _iso_date(when // _DAY),
                "forrigeBostedsadresse": previous_address,
                "bostedsadresse": self._address(person),
            },
            when,
        )

    def _parental_responsibility(self, child: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        parents = {"mor": int(p.mother[child]), "far": int(p.father[child])}
        if not self._alive(child) or all(parent == NOBODY for parent in parents.values()):
            return
        options = [role for role, parent in parents.items() if parent != NOBODY]
        if len(options) == 2:
            options.append("felles")
        ansvar = options[int(aux[0] * len(options))]
        ansvarlige = [
            self._ident(parent) for role, parent in parents.items() if parent != NOBODY and ansvar in (role, "felles")
        ]
        yield self._emit(
            child,
            ff.ENDRING_I_FORELDREANSVAR,
            {
                "ansvar": ansvar,
                "ansvarlige": ansvarlige,
                "gyldigFra": _iso_date(when // _DAY),
            },
            when,
        )

    def _shared_residence(self, child: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        mother, father = int(p.mother[child]), int(p.father[child])
        if not (self._alive(child) and self._alive(mother) and self._alive(father)):
            return
        other = father if p.household[child] == p.household[mother] else mother
        yield self._emit(
            child,
            ff.ENDRING_I_DELT_BOSTED,
            {
                "startdato": _iso_date(when // _DAY + int(aux[0] * 30)),
                "sluttdato": None,
                "deltBostedMedForelder": self._ident(other),
                "adresse": self._address(other),
            },
            when,
        )

    def _address_protection(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(person) or p.protection[person] != UNGRADED:
            return
        p.protection[person] = STRICTLY_CONFIDENTIAL if aux[0] < 0.2 else CONFIDENTIAL
        yield self._emit(
            person,
            ff.ENDRING_I_ADRESSEBESKYTTELSE,
            {
                "gradering": ADRESSEBESKYTTELSE[p.protection[person]],
                "forrigeGradering": ADRESSEBESKYTTELSE[UNGRADED],
                "gyldigFra": _iso_date(when // _DAY),
            },
            when,
        )

    def _d_number_to_fnr(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        p = self.population
        if not self._alive(person) or not p.d_number[person]:
            return
        previous = self._ident(person)
        p.ident[person] = self._new_identity(int(p.birth[person]), False, when)
        p.d_number[person] = False
        yield self._emit(
            person,
            ff.ENDRING_I_IDENTIFIKASJONSNUMMER,
            {
                "forrigeFolkeregisteridentifikator": previous,
                "identifikasjonsnummertype": "foedselsnummer",
                "gyldigFra": _iso_date(when // _DAY),
            },
            when,
        )

    def _unusual(self, person: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        if not self._alive(person):
            return
        hendelsetype = ff.UNUSUAL_TYPES[int(aux[0] * len(ff.UNUSUAL_TYPES))]
        opplysninger = {
            ff.ENDRING_I_STATSBORGERSKAP: {"statsborgerskap": "NOR", "gyldigFra": _iso_date(when // _DAY)},
            ff.ENDRING_I_OPPHOLD: {"oppholdstillatelse": "permanent", "oppholdFra": _iso_date(when // _DAY)},
            ff.FUTURE_TYPE: {"beskrivelse": "syntetisk hendelsetype som konsumenter ikke kjenner"},
        }[hendelsetype]
        yield self._emit(person, hendelsetype, opplysninger, when)

    def _correction(self, _: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        """Correct a recent move or name change: the person's latest one in place, an older move historically."""
        entry = self._pick_recent(aux[0])
        if entry is None:
            return
        seq, doc_id, person, hendelsetype, _previous, recorded = entry
        p = self.population
        latest = self.last_seq[person] == seq and self._alive(person)
        if hendelsetype == ff.ENDRING_I_NAVN and latest:
            p.given[person] = int(aux[1] * len(FEMALE_GIVEN_NAMES))
            opplysninger = {"navn": self._name(person), "gyldigFra": _iso_date(when // _DAY)}
            yield self._emit(person, hendelsetype, opplysninger, when, entitetsendring=ff.KORRIGERE, gjelder=doc_id)
        elif hendelsetype == ff.ENDRING_I_BOSTEDSADRESSE:
            corrected_date = _iso_date(when // _DAY - 30 - int(aux[2] * 60))
            if latest:
                p.house[person] = 1 + int(aux[1] * 149)
                opplysninger = {"flyttedato": corrected_date, "bostedsadresse": self._address(person)}
                yield self._emit(person, hendelsetype, opplysninger, when, entitetsendring=ff.KORRIGERE, gjelder=doc_id)
            else:
                # The register's historic correction carries the whole corrected element: the
                # addresses of that move as they were recorded, with the corrected date.
                opplysninger = {
                    "flyttedato": corrected_date,
                    "bostedsadresse": recorded["bostedsadresse"],
                    "forrigeBostedsadresse": recorded["forrigeBostedsadresse"],
                }
                yield self._emit(
                    person, hendelsetype, opplysninger, when, entitetsendring=ff.KORRIGERE_HISTORISK, gjelder=doc_id
                )

    def _annulment(self, _: int, when: int, aux: np.ndarray) -> Iterator[ff.EventDocument]:
        """Annul a person's latest move or name change; the register state goes back to before it."""
        entry = self._pick_recent(aux[0])
        if entry is None:
            return
        seq, doc_id, person, hendelsetype, previous, _recorded = entry
        if self.last_seq[person] != seq or not self._alive(person):
            return
        p = self.population
        if hendelsetype == ff.ENDRING_I_BOSTEDSADRESSE:
            self._relocate(person, *previous)
        else:
            p.given[person], p.surname[person] = previous
        self._annulled.add(seq)
        yield self._emit(person, hendelsetype, {}, when, entitetsendring=ff.ANNULLERE, gjelder=doc_id)

    def _pick_recent(self, u: float) -> tuple | None:
        if not self._recent:
            return None
        entry = self._recent[int(u * len(self._recent))]
        return None if entry[0] in self._annulled else entry

    def renumbering_events(self, previous: Mapping[str, str], day: date) -> Iterator[ff.EventDocument]:
        """The register's address events of a reform the kommune table already shows (the 2024
        snapshot is the map after 1 January 2024): each resident of a kommune in `previous`
        (today's code -> the code it had before `day`) gets
        `endringIBostedsadresseVedKommuneregulering`, dated `day`, in one burst. The population is
        not changed; it lives under today's codes already."""
        p = self.population
        when = days_of(day) * _DAY
        gyldig_fra = day.isoformat()
        codes = np.array([place.number for place in self.geography.places])
        rows = np.flatnonzero((p.status[: p.size] == RESIDENT) & np.isin(codes[p.kommune[: p.size]], list(previous)))
        for person in rows.tolist():
            code = str(codes[p.kommune[person]])
            yield self._emit(
                person,
                ff.ENDRING_I_BOSTEDSADRESSE_VED_KOMMUNEREGULERING,
                {
                    "gyldigFra": gyldig_fra,
                    "forrigeKommunenummer": previous[code],
                    "kommunenummer": code,
                    "bostedsadresse": self._address(person),
                },
                when,
            )

    def _reform(self, when: int) -> Iterator[ff.EventDocument]:
        """Reform day: renumber every kommune of one fylke; each resident there gets an event."""
        self._reform_done = True
        reform = self.config.reform
        p = self.population
        renumbered = {}
        for index, place in enumerate(list(self.geography.places)):
            if place.fylke_number == reform.fylke and self.geography.current[place.origin] == index:
                renumbered[index] = self.geography.add_renumbered(
                    index, reform.new_fylke + place.number[2:], reform.new_fylke
                )
        rows = np.flatnonzero(np.isin(p.kommune[: p.size], list(renumbered)))
        old_kommune = p.kommune[rows].copy()
        for old, new in renumbered.items():
            p.kommune[rows[old_kommune == old]] = new
        gyldig_fra = _iso_date(when // _DAY)
        for person, old in zip(rows.tolist(), old_kommune.tolist(), strict=False):
            if p.status[person] == RESIDENT:
                yield self._emit(
                    person,
                    ff.ENDRING_I_BOSTEDSADRESSE_VED_KOMMUNEREGULERING,
                    {
                        "gyldigFra": gyldig_fra,
                        "forrigeKommunenummer": self.geography.places[old].number,
                        "kommunenummer": self.geography.places[renumbered[old]].number,
                        "bostedsadresse": self._address(person),
                    },
                    when,
                )


def _iso_date(days: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=int(days))).isoformat()
