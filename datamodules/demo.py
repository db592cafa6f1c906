"""Generated demo data: written once into a folder keyed by its settings (safe under concurrent runs)."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


# ------------------------------------------------------------------------------------- typed arguments
# Hydra hands over whatever the YAML holds; these checks turn a wrong type ("False" for a bool, 1.5 for an
# int) into an error naming the config key instead of a silent misreading.
def build_folder_once(folder: Path, fill: Callable[[Path], None]) -> Path:
    """Generated demo data, written once: `fill(tmp)` writes into a temporary sibling folder, which is marked
    DONE and renamed to `folder`. Idempotent and safe when several processes (test workers, DDP ranks) ask at
    once: the first rename wins, the others discard their copy."""
    if (folder / "DONE").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_demo_", dir=folder.parent))
    try:
        fill(tmp)
        (tmp / "DONE").write_text("ok\n")
        os.replace(tmp, folder)
    except OSError:
        if not (folder / "DONE").is_file():  # not "another process finished first": a real failure
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
