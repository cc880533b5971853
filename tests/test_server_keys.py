"""Access keys: ``router keys add | list | revoke`` and a key file of hashes only, then
``router serve --keys-file`` enforcing each key's alias limits (403 in each API's shape, the
official SDKs' PermissionDeniedError), applying its tags to budgets, and dropping a revoked
key without a restart. Neither an access key nor a provider key appears in a reply or a log
line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
import yaml

from router.cli.main import main
from router.server.keys import KeyRing, digest, env_keys, load_key_file
from tests.servers import openai as oa_wire
from tests.servers.openai import OpenAIServer
from tests.servers.proxy import ProxyProcess

#: The proxy tests share one proxy process (and so one event loop); the command's are sync.
on_module_loop = pytest.mark.asyncio(loop_scope="module")

USER = [{"role": "user", "content": "hi"}]
UPSTREAM_KEY = "sk-upstream-secret-for-keys-0123456789"
KEY_LINE = re.compile(r"^rk-[A-Za-z0-9_-]{43}$")


def add_key(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> str:
    assert main(["keys", "add", "--file", str(path), *args]) == 0
    out = capsys.readouterr().out.strip()
    assert KEY_LINE.match(out), out
    return out


# -- the command --------------------------------------------------------------------------------

def test_add_prints_a_key_once_and_stores_only_its_hash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    key = add_key(capsys, path, "--name", "ci", "--alias", "fast,smart", "--tag", "team=x")
    text = path.read_text()
    assert key not in text and key[3:] not in text
    entry = json.loads(text)["keys"][0]
    assert entry["hash"] == "sha256:" + digest(key).hex()
    assert entry["aliases"] == ["fast", "smart"] and entry["tags"] == {"team": "x"}
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only


def test_two_keys_differ_and_get_free_names(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert add_key(capsys, path) != add_key(capsys, path)
    assert [k.name for k in load_key_file(path)] == ["key-1", "key-2"]


def test_list_shows_names_and_limits_never_hashes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    key = add_key(capsys, path, "--name", "bot", "--alias", "fast")
    for fmt in ("text", "json"):
        assert main(["keys", "list", "--file", str(path), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "bot" in out and "fast" in out
        assert key not in out and digest(key).hex() not in out and "sha256" not in out


def test_revoke_removes_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    add_key(capsys, path, "--name", "a")
    add_key(capsys, path, "--name", "b")
    assert main(["keys", "revoke", "a", "--file", str(path)]) == 0
    assert [k.name for k in load_key_file(path)] == ["b"]
    assert main(["keys", "revoke", "a", "--file", str(path)]) == 1
    assert "no key named 'a'" in capsys.readouterr().err


def test_duplicate_name_and_bad_tag_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    add_key(capsys, path, "--name", "a")
    assert main(["keys", "add", "--file", str(path), "--name", "a"]) == 2
    assert main(["keys", "add", "--file", str(path), "--tag", "oops"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("router keys: ") for line in err)
    assert len(load_key_file(path)) == 1


def test_a_broken_key_file_is_one_line_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"version": 1, "keys": [{"name": "x", "hash": "md5:00"}]}')
    assert main(["keys", "list", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "keys[0].hash" in err
    assert "Traceback" not in err


def test_serve_refuses_a_missing_key_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({"version": 1, "providers": {"f": {"kind": "fake"}},
                                      "models": {"fast": ["f:m"]}}))
    code = main(["serve", str(routes), "--port", "0", "--keys-file", str(tmp_path / "no.json")])
    err = capsys.readouterr().err
    assert code == 2 and "no such key file" in err and "Traceback" not in err


def test_key_ring_matches_in_constant_time_without_early_exit() -> None:
    ring = KeyRing(env_keys(["k1", "k2"]))
    assert ring.match(["nope", "k2"]) is not None and ring.match(["k3"]) is None
    assert KeyRing([], required=True).required and KeyRing([]).match(["k1"]) is None


# -- the proxy ----------------------------------------------------------------------------------

class Keys:
    def __init__(self, path: Path, full: str, fast_only: str, blocked: str) -> None:
        self.path, self.full, self.fast_only, self.blocked = path, full, fast_only, blocked


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    made = []
    for args in ([], ["--alias", "fast"], ["--tag", "team=blocked"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert main(["keys", "add", "--file", str(path), *args]) == 0
        made.append(out.getvalue().strip())
    return Keys(path, *made)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as oa:
        yield oa


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(keys: Keys, upstream: OpenAIServer,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProxyProcess]:
    path = tmp_path_factory.mktemp("proxy") / "routes.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "defaults": {"retry": {"attempts": 1}},
        "providers": {
            "fk": {"kind": "fake", "models": {"m": {"price": {"input": 1, "output": 1}}}},
            "oa": {"kind": "openai", "base_url": upstream.base_url,
                   "api_key": "${TEST_UPSTREAM_KEY}"}},
        "models": {"fast": ["fk:m"], "smart": ["fk:m"], "gpt": ["oa:gpt-4o-mini"]},
        "budgets": [{"scope": "tag:team=blocked", "usd": 0.0000001, "per": "day"}]}))
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    async with ProxyProcess(path, env=env, args=("--keys-file", str(keys.path))) as p:
        yield p
    log = p.log()
    for secret in (UPSTREAM_KEY, keys.full, keys.fast_only, keys.blocked):
        assert secret not in log


def oai(proxy: ProxyProcess, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=key, max_retries=0)


@on_module_loop
async def test_a_key_from_the_file_is_let_in(proxy: ProxyProcess, keys: Keys) -> None:
    resp = await oai(proxy, keys.full).chat.completions.create(model="smart", messages=USER)
    assert resp.choices[0].message.content


@on_module_loop
async def test_an_unknown_key_is_401(proxy: ProxyProcess, keys: Keys) -> None:
    with pytest.raises(openai.AuthenticationError):
        await oai(proxy, keys.full + "x").chat.completions.create(model="fast", messages=USER)


@on_module_loop
async def test_a_limited_key_gets_403_for_another_alias(proxy: ProxyProcess,
                                                        keys: Keys) -> None:
    client = oai(proxy, keys.fast_only)
    assert (await client.chat.completions.create(model="fast", messages=USER)).choices
    with pytest.raises(openai.PermissionDeniedError) as e:
        await client.chat.completions.create(model="smart", messages=USER)
    assert e.value.code == "permission_error" and e.value.param == "model"
    claude = anthropic.AsyncAnthropic(base_url=proxy.base_url, api_key=keys.fast_only,
                                      max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        await claude.messages.create(model="smart", max_tokens=5, messages=USER)
    assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


@on_module_loop
async def test_a_limited_key_lists_only_its_aliases(proxy: ProxyProcess, keys: Keys) -> None:
    assert [m.id async for m in oai(proxy, keys.fast_only).models.list()] == ["fast"]
    assert [m.id async for m in oai(proxy, keys.full).models.list()] == ["fast", "gpt", "smart"]


@on_module_loop
async def test_a_limited_key_cannot_explain_another_alias(proxy: ProxyProcess,
                                                          keys: Keys) -> None:
    auth = {"Authorization": f"Bearer {keys.fast_only}"}
    async with aiohttp.ClientSession(base_url=proxy.base_url, headers=auth) as http, \
            http.post("/v1/router/explain", json={"model": "smart", "messages": USER}) as r:
        assert r.status == 403


@on_module_loop
async def test_key_tags_count_against_tag_budgets(proxy: ProxyProcess, keys: Keys) -> None:
    client = oai(proxy, keys.blocked)
    with pytest.raises(openai.RateLimitError) as e:
        await client.chat.completions.create(model="fast", messages=USER,
                                             extra_headers={"x-router-tag": "team=other"})
    assert e.value.code == "budget_exceeded"  # the key's tag wins over the header's


@on_module_loop
async def test_provider_key_never_in_reply_or_log(proxy: ProxyProcess, keys: Keys,
                                                  upstream: OpenAIServer) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}.",
                      "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}
    upstream.enqueue(oa_wire.json_reply(body, status=401))
    with pytest.raises(openai.InternalServerError) as e:
        await oai(proxy, keys.full).chat.completions.create(model="gpt", messages=USER)
    assert UPSTREAM_KEY not in e.value.response.text
    assert UPSTREAM_KEY not in proxy.log()  # the fixture checks the whole log at the end


@on_module_loop
async def test_revoked_key_is_refused_without_restart(
        proxy: ProxyProcess, keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    client = oai(proxy, keys.fast_only)
    new = add_key(capsys, keys.path, "--name", "late")
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while True:  # the proxy polls the key file about once a second
        try:
            await oai(proxy, new).models.list()
            break
        except openai.AuthenticationError:
            assert loop.time() < end, proxy.log()
            await asyncio.sleep(0.1)
    assert main(["keys", "revoke", "key-2", "--file", str(keys.path)]) == 0
    while True:
        try:
            await client.models.list()
        except openai.AuthenticationError:
            break
        assert loop.time() < end, proxy.log()
        await asyncio.sleep(0.1)
    assert (await oai(proxy, keys.full).models.list()).data  # the others still work
    assert "keys_reloaded" in proxy.log()


@on_module_loop
async def test_readyz_shows_a_broken_key_file_and_keeps_the_keys(
        proxy: ProxyProcess, keys: Keys) -> None:
    good = keys.path.read_text()
    keys.path.write_text("{not json")
    try:
        async with aiohttp.ClientSession(base_url=proxy.base_url) as http:
            body: dict[str, Any] = {}
            loop = asyncio.get_running_loop()
            end = loop.time() + 20
            while "keys" not in body.get("reload_errors", {}):
                assert loop.time() < end, proxy.log()
                await asyncio.sleep(0.1)
                async with http.get("/readyz") as r:
                    assert r.status == 200  # the old keys serve: still ready
                    body = await r.json()
            assert str(keys.path) in body["reload_errors"]["keys"][0]
        assert (await oai(proxy, keys.full).models.list()).data
    finally:
        keys.path.write_text(good)
