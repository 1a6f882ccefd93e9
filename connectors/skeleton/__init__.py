"""`samband connectors new NAME`: a working connector package from the templates in template/.

Placeholders in the templates: __NAME__ (connector name, e.g. `lib-loans`), __PACKAGE__
(its Python package, `samband_lib_loans`) and __CLASS__ (`LibLoansSource`).
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATE = Path(__file__).parent / "template"
NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}$")


def generate(name: str, target: Path) -> Path:
    """Write the skeleton package for `name` into target/name; returns that directory."""
    if not NAME.match(name):
        raise ValueError("connector name: 2-41 characters, lower-case letters, digits and '-', starting with a letter")
    root = target / name
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    package = "samband_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + "Source"
    for template in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATE).with_suffix("")
        relative = Path(*(package if part == "package" else part for part in relative.parts))
        text = (
            template.read_text("utf-8")
            .replace("__NAME__", name)
            .replace("__PACKAGE__", package)
            .replace("__CLASS__", cls)
        )
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, "utf-8")
    return root
