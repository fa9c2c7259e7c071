"""The demo, the main job: `python -m google_auth_aiohttp demo`."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from google_auth_aiohttp._demo import run_demo
from google_auth_aiohttp.testing import _accounts


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


async def test_demo_makes_and_loads_its_keys_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Making an RSA key holds the loop 0.03-0.3 s and loading one ~0.05 s:
    # under `python -X dev` that is a slow callback. Each must run where no
    # event loop is running: in a worker thread.
    on_the_loop: list[str] = []

    def off_the_loop_only(function: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(RuntimeError):  # none running: a thread
                asyncio.get_running_loop()
                on_the_loop.append(function.__name__)
            return function(*args, **kwargs)

        return spy

    for module, name in [
        (rsa, "generate_private_key"),
        (serialization, "load_pem_private_key"),
    ]:
        monkeypatch.setattr(module, name, off_the_loop_only(getattr(module, name)))
    _accounts.shared_key_pair.cache_clear()  # made once per process: made here
    assert await run_demo(5) == 0
    assert "no more" in capsys.readouterr().out
    assert on_the_loop == []
