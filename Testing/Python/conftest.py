"""Shared test set-up: the image-verification cache lives in a temporary folder, never in ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _verification_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFUSIONSEG_CACHE_DIR", str(tmp_path_factory.mktemp("diffusionseg-cache")))
    yield
    mp.undo()
