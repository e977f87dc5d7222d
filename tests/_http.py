"""Kept for tests written before the ``loopback`` fixture (tests/conftest.py); use that."""

from conftest import FakeServer, Route, serve  # noqa: F401
