"""Rules the test suite keeps so that it runs the same in any order and on any machine."""

import re
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_module_imports_from_conftest():
    # With several conftest.py files, `import conftest` finds whichever was loaded last.
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if re.search(r"^\s*(from conftest import|import conftest)", path.read_text(), re.MULTILINE)
    ]
    assert offenders == [], f"import helpers from tests/support.py instead: {offenders}"
