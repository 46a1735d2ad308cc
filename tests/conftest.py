"""Shared test configuration: fixtures live in tests/fixtures/, one module per concern."""

pytest_plugins = [
    "tests.fixtures.photos",
    "tests.fixtures.engine",
    "tests.fixtures.db",
    "tests.fixtures.services",
    "tests.fixtures.api_server",
]
