"""`make demo`, exactly as the README's quick start runs it: embedded broker, training, held-out accuracy.

The only difference from a newcomer's run is where the state goes (`DEMO_DIR`, a temporary directory
here, `.pulsetrain/digits` by default), so the test never touches the checkout's own demo files.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_make_demo_trains_digits_to_095_held_out_and_says_where_the_model_is(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    result = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_DIR={state}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    accuracy = re.search(r"held-out accuracy (\d\.\d+)", output)
    assert accuracy and float(accuracy.group(1)) >= 0.95, output[-2000:]
    assert re.search(rf"model\s+version 1 at {re.escape(str(state / 'export' / '1'))}", output), output[-2000:]
    assert (state / "export" / "1" / "saved_model.pb").exists()
