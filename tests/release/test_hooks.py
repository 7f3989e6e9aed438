"""rollout.release.hooks: wiring the notifiers from URLs and the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import REPO_ROOT as REPO

from rollout.config import load_release
from rollout.release.hooks import default_hooks


def test_a_missing_grafana_token_turns_annotations_off_instead_of_stopping_the_bot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.delenv("GRAFANA_TOKEN_FILE", raising=False)
    release = load_release(REPO)
    with caplog.at_level(logging.WARNING, logger="rollout.release.hooks"):
        hooks = default_hooks(
            release=release, alertmanager_url="http://127.0.0.1:9093", grafana_url="http://127.0.0.1:3000",
            report_dir=tmp_path, prometheus=None,
        )
    assert [h.grafana for h in hooks] == [None]
    assert hooks[0].alertmanager is not None and hooks[0].report_writer is not None
    assert "Grafana annotations are off" in caplog.text


def test_a_grafana_token_from_a_file_enables_annotations_and_never_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("glsa_very_secret\n")
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.setenv("GRAFANA_TOKEN_FILE", str(token))
    hooks = default_hooks(
        release=load_release(REPO), alertmanager_url=None, grafana_url="http://127.0.0.1:3000",
        report_dir=tmp_path, prometheus=None,
    )
    assert hooks[0].grafana is not None and hooks[0].alertmanager is None
    assert "glsa_very_secret" not in repr(hooks)
