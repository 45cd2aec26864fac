"""The packaged auditors' suite (socle/auditsuite/test_requirements.py), collected here for `pytest tests/infra`."""
from socle.auditsuite.test_requirements import pytest_generate_tests, test_requirement  # noqa: F401
