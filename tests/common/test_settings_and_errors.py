"""Settings fail with a sentence naming the variable; errors carry the field named."""

from __future__ import annotations

import re

import grpc
import pytest

from services.common.auth import is_subject_safe
from services.common.errors import InvalidArgument, to_status
from services.common.settings import Settings, SettingsError


def test_defaults_match_the_readme(tmp_path):
    settings = Settings.from_env({"SLIDELANE_DATA_DIR": str(tmp_path)})
    assert settings.port == 8000
    assert settings.max_active_users == 3
    assert settings.inference_workers == 2
    assert settings.torch_threads == 0  # torch's default; the launcher divides the cores among its replicas
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'slidelane.db'}"
    assert settings.slide_roots == (tmp_path / "slides",)
    assert settings.nats_embedded


@pytest.mark.parametrize(
    ("name", "value", "mentions"),
    [
        ("SLIDELANE_PORT", "eighty", "SLIDELANE_PORT"),
        ("SLIDELANE_MAX_ACTIVE_USERS", "0", "at least 1"),
        ("SLIDELANE_DATABASE_URL", "mysql://x", "sqlite+aiosqlite"),
        ("SLIDELANE_DEVICE", "tpu", "auto, cpu or cuda"),
        ("SLIDELANE_TORCH_THREADS", "two", "SLIDELANE_TORCH_THREADS"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(name, value, mentions):
    with pytest.raises(SettingsError, match=re.escape(mentions)):
        Settings.from_env({name: value})


def test_subject_safety_refuses_nats_wildcards_and_separators():
    assert is_subject_safe("alice-01_x")
    for bad in ("a.b", "a*", "a>", "a b", "", "x" * 65):
        assert not is_subject_safe(bad)


def test_invalid_argument_maps_to_its_status_with_the_field():
    status = to_status(InvalidArgument("jobs[1].depends_on names unknown job 'x'", field="jobs[1].depends_on"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown job" in status.details
    assert any(key == "grpc-status-details-bin" for key, _ in status.trailing_metadata)
