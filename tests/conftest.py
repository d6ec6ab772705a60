"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest

from parapeft.backbones import load_base_model


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded SmolLM2-135M-Instruct, from the default cache (fetched there on first use)."""
    return load_base_model("smollm2-135m")
