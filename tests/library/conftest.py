"""Fixtures for library tests."""

from __future__ import annotations

import pytest
from helpers import toy_task

from loralab.data import Task


@pytest.fixture
def task() -> Task:
    return toy_task()
