"""The packaged live host checks (socle/auditsuite/test_hosts.py), collected here for `pytest tests/infra`."""
from socle.auditsuite.test_hosts import pytest_generate_tests, test_daemon  # noqa: F401
