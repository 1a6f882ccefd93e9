"""Register this package's entry point from the checkout the way pip would, without installing it:
a dist-info folder with entry_points.txt, in a temp folder for sys.path or PYTHONPATH. Samband's
own suite uses it; installed with `pip install -e .`, nothing here is needed."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).parent.parent


def register_checkout() -> list[str]:
    """The folders to put first on sys.path (or PYTHONPATH) so `samband.delivery_kinds` lists `sftp`."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    folder = tempfile.mkdtemp(prefix="samband-sftp-drop-")
    atexit.register(shutil.rmtree, folder, True)
    dist = Path(folder) / f"samband_sftp_drop-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"].items()
    (dist / "entry_points.txt").write_text(
        "\n".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups)
    )
    return [str(PACKAGE), str(dist.parent)]
