"""Records and fingerprints made before the "One house" rearrangement (tests/golden/, by
make_golden.py at commit d3e56fa) are reproduced exactly by the current code: the
rearrangement changed where code lives, not what it computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_fingerprints_of_every_experiment_are_unchanged():
    from tests.golden.make_golden import fingerprints

    expected = json.loads((GOLDEN / "fingerprints.json").read_text())
    got = json.loads(json.dumps(fingerprints(), sort_keys=True))
    for key in expected:
        assert got[key]["identity"] == expected[key]["identity"], key
        assert got[key]["fingerprint"] == expected[key]["fingerprint"], key


@pytest.mark.slow
def test_a_short_training_run_reproduces_its_golden_record(tmp_path):
    # a fresh process: the golden run used one torch thread and a fresh global RNG
    code = ("import json, sys; from tests.golden.make_golden import run; "
            "print(json.dumps(run(sys.argv[1]), sort_keys=True))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         cwd=GOLDEN.parents[1], check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = json.loads((GOLDEN / "run.json").read_text())
    assert got["record_path"] == expected["record_path"]
    assert got["record"] == expected["record"]
    assert got["history"] == expected["history"]
    assert got["predictions"] == expected["predictions"]
