"""Shared fixtures: the real default model, loaded once per test session."""

import pytest


@pytest.fixture(scope="session")
def default_model():
    from reprank.models import load_model

    return load_model()
