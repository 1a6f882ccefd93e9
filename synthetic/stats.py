"""`samband simulate stats`: shares per fylke, age pyramid and yearly event rates of a synthetic Norway."""

from __future__ import annotations

from collections import Counter

import numpy as np

from synthetic.lifecourse import Simulation
from synthetic.population import FEMALE, MALE, days_of

_BAND_YEARS = 5
_BAR_WIDTH = 40


def render_stats(simulation: Simulation, years: int = 1) -> str:
    """Describe the population at start, then simulate `years` and report events per 1000 residents per year."""
    population = simulation.population
    residents = population.resident_mask()
    lines = [f"Synthetic population: {int(residents.sum()):,} residents (seed {simulation.config.seed})", ""]
    lines += _fylke_shares(simulation, residents)
    lines += _age_pyramid(simulation, residents)
    start_residents = int(residents.sum())
    counts = Counter((document.hendelsetype, document.entitetsendring) for document in simulation.events(years=years))
    lines += ["", f"Events per 1000 residents per year (simulated {years} year(s) from {simulation.config.start}):"]
    for (hendelsetype, entitetsendring), count in sorted(counts.items(), key=lambda item: -item[1]):
        lines.append(
            f"  {hendelsetype:<45} {entitetsendring:<19} {count:>9,}  {1000 * count / start_residents / years:7.2f}"
        )
    return "\n".join(lines)


def _fylke_shares(simulation: Simulation, residents: np.ndarray) -> list[str]:
    places = simulation.geography.places
    fylke_of_place = np.array([int(place.fylke_number) for place in places])
    names = {int(place.fylke_number): place.fylke_name for place in places}
    per_fylke = np.bincount(
        fylke_of_place[simulation.population.kommune[: simulation.population.size][residents]], minlength=100
    )
    total = per_fylke.sum()
    lines = ["Share of residents per fylke:"]
    for number in np.flatnonzero(per_fylke):
        share = per_fylke[number] / total
        lines.append(f"  {number:02d} {names[number]:<16} {per_fylke[number]:>10,}  {100 * share:5.1f} %")
    return lines


def _age_pyramid(simulation: Simulation, residents: np.ndarray) -> list[str]:
    population = simulation.population
    ages = population.ages(days_of(simulation.config.start))[residents].astype(np.int64)
    gender = population.gender[: population.size][residents]
    bands = np.minimum(ages // _BAND_YEARS, 100 // _BAND_YEARS)
    men = np.bincount(bands[gender == MALE], minlength=21)
    women = np.bincount(bands[gender == FEMALE], minlength=21)
    scale = _BAR_WIDTH / max(men.max(), women.max(), 1)
    total = len(ages)
    lines = ["", "Age pyramid (men | women, share of all residents):"]
    for band in range(len(men) - 1, -1, -1):
        label = (
            f"{band * _BAND_YEARS}+"
            if band == len(men) - 1
            else f"{band * _BAND_YEARS}-{band * _BAND_YEARS + _BAND_YEARS - 1}"
        )
        left = "#" * round(men[band] * scale)
        right = "#" * round(women[band] * scale)
        lines.append(
            f"  {label:>6} {left:>{_BAR_WIDTH}}|{right:<{_BAR_WIDTH}} {100 * (men[band] + women[band]) / total:4.1f} %"
        )
    return lines
