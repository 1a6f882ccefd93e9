"""Synthetic Norway: a seeded population and life-course simulation that emits Folkeregister-style events.

All identity numbers are synthetic (month + 80, docs/domain.md §1); names and addresses are invented.
"""

from synthetic.config import Reform, SyntheticConfig, YearlyRates
from synthetic.lifecourse import Simulation

__all__ = ["Reform", "Simulation", "SyntheticConfig", "YearlyRates"]
