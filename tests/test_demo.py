"""The demo, the main job: `python -m google_auth_aiohttp demo`."""

from __future__ import annotations

import subprocess
import sys


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "google_auth_aiohttp", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_reports_one_token_request_per_phase() -> None:
    result = _demo()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    for phase, tokens, api in [
        ("cold start", 1, 100),
        ("token revoked", 1, 200),
        ("token expired", 1, 100),
        ("steady state", 0, 100),
    ]:
        rows = [line.split() for line in lines if line.strip().startswith(phase)]
        assert len(rows) == 2, result.stdout  # async and sync credentials
        for row in rows:
            ok, failed, token_requests, api_requests = map(int, row[-5:-1])
            assert (ok, failed, token_requests, api_requests) == (
                100,
                0,
                tokens,
                api,
            )
    assert "no more" in lines[-1]


def test_demo_rejects_a_bad_count() -> None:
    result = _demo("--requests", "0")
    assert result.returncode == 2
    assert "--requests must be 1 or more" in result.stderr
