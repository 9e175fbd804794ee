"""Shared fixtures: devices, fixture corpora and the synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import fixtures

SHARED_EMODB = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb-2s"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device test runs on the CPU and, when present, on CUDA."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def iemocap_root(tmp_path_factory) -> Path:
    return fixtures.write_iemocap(tmp_path_factory.mktemp("iemocap"))


@pytest.fixture(scope="session")
def synthetic():
    """The default synthetic manifest (generated once into outputs/, then reused)."""
    from serlib.corpora import load_corpus

    return load_corpus("synthetic")


@pytest.fixture(scope="session")
def emodb_root() -> Path:
    if not (SHARED_EMODB / "wav").is_dir():
        pytest.skip("../shared/data/emodb-2s is not on this machine")
    return SHARED_EMODB
