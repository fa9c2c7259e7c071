"""`python -m google_auth_aiohttp request`: an authorized curl, as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from google_auth_aiohttp.testing import GoogleEmulator


async def _cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, bytes, str]:
    # A subprocess the event loop waits for, so the emulator keeps serving.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "google_auth_aiohttp",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out, err.decode()


@pytest.fixture
def adc(google: GoogleEmulator, tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "key.json"
    key.write_text(json.dumps(google.service_account_info()))
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(key)}


async def test_get_prints_the_body_and_exits_0(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    code, out, err = await _cli("request", google.api_url("cli?a=1"), env=adc)
    assert code == 0, err
    echo = json.loads(out)
    assert echo["method"] == "GET"
    assert echo["query"] == {"a": "1"}
    assert google.token_requests == 1


async def test_method_headers_data_and_include(
    google: GoogleEmulator, adc: dict[str, str], tmp_path: Path
) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"x": 1}')
    code, out, err = await _cli(
        "request",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Extra: yes",
        "-d",
        f"@{body}",
        "-i",
        google.api_url("put"),
        env=adc,
    )
    assert code == 0, err
    head, _, payload = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: application/json" in head
    echo = json.loads(payload)
    assert echo["method"] == "PUT"
    assert echo["body"] == '{"x": 1}'
    assert echo["headers"]["x-extra"] == "yes"


async def test_data_from_stdin_defaults_to_post(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    code, out, _ = await _cli(
        "request", "-d", "@-", google.api_url("p"), env=adc, stdin=b"piped"
    )
    assert code == 0
    assert json.loads(out)["method"] == "POST"
    assert json.loads(out)["body"] == "piped"


async def test_non_2xx_exits_1(google: GoogleEmulator, adc: dict[str, str]) -> None:
    code, out, _ = await _cli("request", google.api_url("x?status=404"), env=adc)
    assert code == 1
    assert json.loads(out)["path"] == "/api/x"


async def test_no_credentials_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    code, out, err = await _cli(
        "request",
        "http://127.0.0.1:9/never",
        env={"CLOUDSDK_CONFIG": str(tmp_path)},
    )
    assert code == 2
    assert out == b""
    assert "no credentials found" in err
    assert "Application Default Credentials" in err


async def test_help_describes_both_commands() -> None:
    code, out, _ = await _cli("--help")
    assert code == 0
    assert b"demo" in out and b"request" in out
    code, out, _ = await _cli("request", "--help")
    assert code == 0
    for flag in (b"-X", b"-H", b"-d", b"--scopes", b"-i"):
        assert flag in out
