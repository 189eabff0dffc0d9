"""Tiny random-initialised diffusers pipelines, built once per test session (a second each)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """``tiny_pipeline(family)`` → the folder of a tiny pipeline of that family (sd, sdxl, sd3, flux)."""
    from noiselevels.runs.families.tiny import build_tiny_pipeline

    built = {}

    def get(family: str):
        if family not in built:
            built[family] = build_tiny_pipeline(family, tmp_path_factory.mktemp(f"tiny_{family}"))
        return built[family]

    return get


@pytest.fixture(scope="session")
def latent_model(tiny_pipeline):
    """``latent_model(family)`` → the loaded ``LatentModel`` of the tiny pipeline (shared: do not modify)."""
    from noiselevels.runs.families import load_pipeline

    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_pipeline(tiny_pipeline(family))
        return loaded[family]

    return get
