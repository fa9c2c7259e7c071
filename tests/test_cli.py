"""`python -m google_auth_aiohttp request`: an authorized curl.

Most cases run the command in this process (in a thread, with its own
streams); a few run it as the console script in a subprocess, as users do.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from google_auth_aiohttp.testing import GoogleEmulator


async def _cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    subprocess: bool = False,
) -> tuple[int, bytes, str]:
    """Run the command line, in this process unless ``subprocess`` says not.

    In process, it runs in a thread of its own (its own ``asyncio.run``), so
    the emulator keeps serving on this loop; ``sys.std*`` and the environment
    are the command's while it runs.
    """
    if subprocess:
        return await _cli_process(*args, env=env, stdin=stdin)
    return await asyncio.to_thread(_cli_in_thread, list(args), env or {}, stdin)


_CLI_LOCK = threading.Lock()  # one command at a time owns sys.std* and os.environ


def _cli_in_thread(
    args: list[str], env: dict[str, str], stdin: bytes
) -> tuple[int, bytes, str]:
    from google_auth_aiohttp import _cli as cli

    out, err = io.BytesIO(), io.BytesIO()
    ours = (
        io.TextIOWrapper(io.BytesIO(stdin)),
        io.TextIOWrapper(out, write_through=True),
        io.TextIOWrapper(err, write_through=True),
    )
    streams = (sys.stdin, sys.stdout, sys.stderr)
    saved = {name: os.environ.get(name) for name in env}
    with _CLI_LOCK:
        sys.stdin, sys.stdout, sys.stderr = ours
        os.environ.update(env)
        try:
            code = cli.main(args)
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code if isinstance(exit.code, int) else 2
        finally:
            sys.stdin, sys.stdout, sys.stderr = streams
            for stream in ours:
                stream.flush()
                stream.detach()  # so that collecting it does not close ours
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return code, out.getvalue(), err.getvalue().decode()


async def _cli_process(
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
    # As users run it: the module in a process of its own, warnings as errors.
    code, out, err = await _cli(
        "request", google.api_url("cli?a=1"), env=adc, subprocess=True
    )
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


async def test_no_credentials_is_a_clear_message_and_exit_3(tmp_path: Path) -> None:
    code, out, err = await _cli(
        "request",
        "http://127.0.0.1:9/never",
        env={"CLOUDSDK_CONFIG": str(tmp_path)},
    )
    assert code == 3
    assert out == b""
    assert err.startswith("google-auth-aiohttp: error: no credentials found")
    assert "Application Default Credentials" in err
    assert err.count("\n") == 1  # one line, no traceback


async def test_help_describes_every_command_and_the_exit_codes() -> None:
    code, out, _ = await _cli("--help")
    assert code == 0
    for word in (b"demo", b"request", b"print-access-token", b"4 network"):
        assert word in out
    for word in (b"print-identity-token",):
        assert word in out
    code, out, _ = await _cli("request", "--help")
    assert code == 0
    for flag in (b"-X", b"-H", b"-d", b"--scopes", b"-i", b"-f", b"-s", b"-o", b"-v"):
        assert flag in out
    assert b"--max-time" in out


async def test_version_and_the_console_script() -> None:
    from google_auth_aiohttp import __version__

    code, out, _ = await _cli("--version")
    assert (code, out.decode().strip()) == (0, __version__)
    script = shutil.which("google-auth-aiohttp", path=os.path.dirname(sys.executable))
    assert script is not None
    process = await asyncio.create_subprocess_exec(
        script, "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert out.decode().strip() == __version__


@pytest.mark.parametrize("flag", ["--version", "--help"])
async def test_version_and_help_import_no_transport(flag: str) -> None:
    # In a fresh interpreter: what this process imported says nothing.
    check = (
        "import sys\n"
        "from google_auth_aiohttp._cli import main\n"
        "try:\n"
        f"    main([{flag!r}])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ('asyncio', 'aiohttp', 'google.auth', 'yarl', 'multidict')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "             or m.startswith('google.auth')), file=sys.stderr)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        check,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert err.decode().strip() == "[]"


async def test_print_access_token_prints_the_token_alone(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    code, out, err = await _cli("print-access-token", env=adc)
    assert code == 0, err
    token = out.decode()
    assert token.endswith("\n") and token.count("\n") == 1
    assert token.strip() in google.issued_tokens


@pytest.mark.parametrize("option", ["--audiences", "--audience"])
async def test_print_identity_token_prints_an_id_token_for_the_audience(
    google: GoogleEmulator, adc: dict[str, str], option: str
) -> None:
    # --audiences as gcloud spells it, --audience as this command first did.
    from google_auth_aiohttp import Request, id_token

    code, out, err = await _cli(
        "print-identity-token", option, "https://svc.test", env=adc
    )
    assert code == 0, err
    token = out.decode().strip()
    async with Request() as request:
        claims = await id_token.verify_token(
            token, request, audience="https://svc.test", certs_url=google.certs_url
        )
    assert claims["aud"] == "https://svc.test"


async def test_print_identity_token_needs_an_audience() -> None:
    code, out, err = await _cli("print-identity-token")
    assert (code, out) == (2, b"")
    assert "--audiences" in err
    code, out, _ = await _cli("print-identity-token", "--help")
    assert code == 0
    # Python 3.13 names the metavar once: "--audiences, --audience AUDIENCE".
    assert re.search(rb"--audiences( AUDIENCE)?, --audience AUDIENCE", out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["request", "ftp://127.0.0.1/x"], "is not an http or https URL"),
        (["request", "http://[::1"], "is not a URL"),
        (["request", "not a url"], "is not an http or https URL"),
        (["request", "-X", "GE T", "http://127.0.0.1:9/"], "is not an HTTP method"),
        (["request", "-H", "no colon", "http://127.0.0.1:9/"], "'Name: value'"),
        (["request", "-d", "@/no/such/file", "http://127.0.0.1:9/"], "cannot read"),
        (["request", "-o", "/no/such/dir/out", "http://127.0.0.1:9/"], "cannot write"),
        (["request", "--max-time", "nan", "http://127.0.0.1:9/"], "is not a time"),
    ],
)
async def test_usage_errors_are_one_line_and_exit_2(
    adc: dict[str, str], args: list[str], message: str
) -> None:
    code, out, err = await _cli(*args, env=adc)
    assert code == 2, err
    assert out == b""
    assert message in err
    assert err.count("\n") == 1


async def test_argparse_usage_errors_exit_2() -> None:
    code, _, err = await _cli("request")
    assert code == 2
    assert "URL" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is a directory"),
        ("[1, 2]", "is not a credentials file"),
        ("{not json", "is not JSON"),
        ('{"type": "service_account", "client_email": "x"}', "invalid credentials"),
    ],
)
async def test_bad_credentials_files_are_named_and_exit_3(
    tmp_path: Path, content: str | None, message: str
) -> None:
    key = tmp_path / "key.json"
    if content is None:
        key.mkdir()
    else:
        key.write_text(content)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(key)}
    for command in (["print-access-token"], ["request", "http://127.0.0.1:9/"]):
        code, out, err = await _cli(*command, env=env)
        assert code == 3, err
        assert out == b""
        assert message in err and str(key) in err
        assert "Traceback" not in err and "('" not in err  # no tuple reprs
        assert err.count("\n") == 1


async def test_refused_credentials_exit_3(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    google.token_error = "invalid_grant"
    code, out, err = await _cli("print-access-token", env=adc)
    assert code == 3
    assert out == b""
    assert "the credentials were refused" in err and "invalid_grant" in err


@pytest.fixture
async def troubles(serve: Any) -> str:
    """A server whose paths misbehave: a redirect loop, a cut body, slowness."""

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100
        await response.prepare(request)
        await response.write(b"only ten b")
        assert request.transport is not None
        request.transport.close()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_get("/loop", loop)
    app.router.add_get("/cut", cut)
    app.router.add_get("/slow", slow)
    url: str = await serve(app)
    return url


@pytest.mark.parametrize(
    ("path", "args", "message"),
    [
        ("/loop", [], "redirect"),
        ("/cut", [], "/cut"),
        ("/slow", ["--max-time", "0.5"], "timed out"),
    ],
)
async def test_network_failures_are_one_line_and_exit_4(
    troubles: str, adc: dict[str, str], path: str, args: list[str], message: str
) -> None:
    code, _, err = await _cli("request", *args, troubles + path, env=adc)
    assert code == 4, err
    assert message in err.lower() or message in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


async def test_a_refused_connection_exits_4(adc: dict[str, str]) -> None:
    code, out, err = await _cli("request", "http://127.0.0.1:9/x", env=adc)
    assert code == 4, err
    assert out == b""
    assert err.startswith("google-auth-aiohttp: error: GET http://127.0.0.1:9/x:")


async def test_debug_shows_the_traceback(adc: dict[str, str]) -> None:
    code, _, err = await _cli("--debug", "request", "http://127.0.0.1:9/x", env=adc)
    assert code == 4
    assert "Traceback" in err


async def test_fail_silent_and_output(
    google: GoogleEmulator, adc: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = await _cli(
        "request", "-f", google.api_url("x?status=404"), env=adc
    )
    assert (code, out) == (1, b"")
    assert "404" in err
    code, out, err = await _cli(
        "request", "-s", google.api_url("x?status=500"), env=adc
    )
    assert code == 1
    assert err == ""
    assert json.loads(out)["path"] == "/api/x"
    target = tmp_path / "out.json"
    code, out, err = await _cli(
        "request", "-o", str(target), google.api_url("saved"), env=adc
    )
    assert (code, out) == (0, b""), err
    assert json.loads(target.read_bytes())["path"] == "/api/saved"


async def test_errors_show_no_password_and_no_query(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    port = google.url.rsplit(":", 1)[1]
    # A refused connection (nothing listens on port 9 here), and an HTTP failure.
    for url in (
        "http://user:PASSWORD@127.0.0.1:9/x?access_token=SECRET",
        f"http://user:PASSWORD@127.0.0.1:{port}/api/x?status=500&access_token=SECRET",
    ):
        code, _, err = await _cli("request", "-f", url, env=adc)
        assert code in (1, 4), err
        assert "PASSWORD" not in err
        assert "SECRET" not in err
        assert "127.0.0.1" in err  # where it failed is still said
    # A header line without a colon is not echoed: its value may be the token.
    code, _, err = await _cli(
        "request", "-H", "Authorization Bearer SECRET", google.api_url("x"), env=adc
    )
    assert code == 2, err
    assert "SECRET" not in err
    assert "Authorization" in err
    # --debug's traceback is scrubbed too.
    code, _, err = await _cli(
        "--debug", "request", "http://u:PASSWORD@127.0.0.1:9/x?k=SECRET", env=adc
    )
    assert code == 4, err
    assert "Traceback" in err
    assert "PASSWORD" not in err
    assert "SECRET" not in err
    # Not a URL the command takes: the usage error shows it without its secrets.
    for text in (
        "user:PASSWORD@127.0.0.1:9/x?access_token=SECRET",
        "http:user:PASSWORD@127.0.0.1:9/x?access_token=SECRET",
    ):
        code, _, err = await _cli("request", text, env=adc)
        assert code == 2, err
        assert "PASSWORD" not in err
        assert "SECRET" not in err
        assert "127.0.0.1:9/x" in err


@pytest.fixture
async def moved(serve: Any) -> str:
    """``/moved`` redirects to ``/here``, which says if it was authorized."""

    async def move(request: web.Request) -> web.Response:
        raise web.HTTPFound("/here", text="moved to /here")

    async def here(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "authorized": request.headers.get("Authorization", "").startswith(
                    "Bearer "
                )
            }
        )

    app = web.Application()
    app.router.add_get("/moved", move)
    app.router.add_get("/here", here)
    url: str = await serve(app)
    return url


@pytest.mark.parametrize("flags", [[], ["-L"], ["--location"]])
async def test_redirects_are_followed_by_default(
    moved: str, adc: dict[str, str], flags: list[str]
) -> None:
    # Unlike curl, -L is the default: an authorized client follows, as aiohttp does.
    code, out, err = await _cli("request", *flags, moved + "/moved", env=adc)
    assert code == 0, err
    assert json.loads(out) == {"authorized": True}  # the same origin


async def test_no_location_answers_the_redirect_and_exits_0(
    moved: str, adc: dict[str, str]
) -> None:
    code, out, err = await _cli(
        "request", "--no-location", "-i", moved + "/moved", env=adc
    )
    assert code == 0, err
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"\r\nLocation: /here" in head
    assert body == b"moved to /here"
    assert err == ""
    # A failing status is still a failure.
    code, _, err = await _cli("request", "--no-location", moved + "/gone", env=adc)
    assert code == 1
    assert "404" in err


async def test_help_says_redirects_are_followed() -> None:
    code, out, _ = await _cli("request", "--help")
    assert code == 0
    text = " ".join(out.decode().split())
    assert "-L, --location follow redirects (the default" in text
    assert "--no-location do not follow redirects" in text


async def test_verbose_shows_the_exchange_without_its_secrets(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    # Against the emulator's API, which accepts only the tokens it issued.
    code, out, err = await _cli(
        "request",
        "-v",
        "-H",
        "Cookie: sid=COOKIE-SECRET",
        "-H",
        "x-goog-iap-jwt-assertion: IAP-SECRET",
        "-H",
        "Proxy-Authorization: Basic PROXY-SECRET",
        "-H",
        "X-Api-Key: KEY-SECRET",
        "-H",
        "X-Trace: visible",
        google.api_url("v?key=QUERY-SECRET"),
        env=adc,
    )
    assert code == 0, err
    assert json.loads(out)["path"] == "/api/v"  # the body, as without -v
    (token,) = google.issued_tokens
    assert token not in err
    for secret in ("COOKIE", "IAP", "PROXY", "KEY", "QUERY"):
        assert f"{secret}-SECRET" not in err
    lines = err.splitlines()
    assert lines[0] == "> GET /api/v?<query not shown> HTTP/1.1"
    # Names as sent: google-auth's credentials write "authorization".
    assert "> authorization: <redacted>" in lines
    for line in (
        "> Cookie: <redacted>",
        "> x-goog-iap-jwt-assertion: <redacted>",
        "> Proxy-Authorization: <redacted>",
        "> X-Api-Key: <redacted>",
        "> X-Trace: visible",
        f"> Host: {google.url.split('//', 1)[1]}",
        ">",
        "< HTTP/1.1 200 OK",
        "< Content-Type: application/json",
        "<",
    ):
        assert line in lines, line
    assert lines.index("<") == len(lines) - 1  # the response's head comes last


async def test_verbose_shows_every_hop_of_a_redirect(
    moved: str, adc: dict[str, str]
) -> None:
    code, _, err = await _cli("request", "--verbose", moved + "/moved", env=adc)
    assert code == 0, err
    shown = [line for line in err.splitlines() if line[2:3] not in ("", " ")]
    firsts = [line for line in shown if line.startswith(("> GET", "< HTTP"))]
    assert firsts == [
        "> GET /moved HTTP/1.1",
        "< HTTP/1.1 302 Found",
        "> GET /here HTTP/1.1",
        "< HTTP/1.1 200 OK",
    ]
    assert "< Location: /here" in shown
    assert err.count("> authorization: <redacted>") == 2  # the same origin
    assert "Bearer" not in err


async def test_verbose_in_its_own_process(
    google: GoogleEmulator, adc: dict[str, str]
) -> None:
    # As users run it, warnings as errors: standard error has the exchange only.
    code, out, err = await _cli(
        "request", "-v", google.api_url("p"), env=adc, subprocess=True
    )
    assert code == 0, err
    assert json.loads(out)["path"] == "/api/p"
    (token,) = google.issued_tokens
    assert token not in err
    assert "> authorization: <redacted>" in err.splitlines()
    assert err.endswith("<\n")
