"""The layout says what runs per request: nothing on the request path imports offline tooling.

``gatekeeper/offline/`` holds what only the command line runs (audit verify/query/report, policy
replay, subject administration, simulate, the demo) and ``gatekeeper/cli/`` every entry point.
Everything else is the request path, start-up included. Two checks keep it so: a real request
served in a fresh interpreter must not load either package, and no request-path module may
name one in an import, even one inside a function that no test happens to call.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT

PACKAGE = ROOT / "gatekeeper"
SUBJECTS = ROOT / "examples" / "demo" / "subjects.toml"
DEMO_CONFIG = ROOT / "examples" / "demo" / "gatekeeper.toml"
FORBIDDEN = ("gatekeeper.offline", "gatekeeper.cli")

# Run in a fresh interpreter: builds gatekeeper from settings, serves a chat completion (allowed,
# shaped, recorded) and a refusal, closes it (flushing the decision log), then prints every
# gatekeeper module it loaded.
_SERVE_ONE = """
import asyncio, json, sys
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatekeeper.middleware import GatekeeperMiddleware
from gatekeeper.runtime import Gatekeeper
from gatekeeper.settings import Settings

config, overrides, log = sys.argv[1] or None, json.loads(sys.argv[2]), Path(sys.argv[3])


async def chat(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({
        "id": "c1", "object": "chat.completion", "model": "demo-reasoner",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    })


async def main() -> list[int]:
    gk = Gatekeeper.from_settings(Settings.load(config, **overrides))
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    protected = GatekeeperMiddleware(app, gatekeeper=gk)
    transport = httpx.ASGITransport(app=protected, client=("127.0.0.1", 50000))
    body = {"model": "demo-reasoner", "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            ok = await http.post(
                "/v1/chat/completions", json=body, headers={"x-api-key": "gk-demo-pro"}
            )
            refused = await http.post("/v1/chat/completions", json=body)
    finally:
        await gk.aclose()
    return [ok.status_code, refused.status_code]


statuses = asyncio.run(main())
events = [json.loads(line) for line in log.read_text().splitlines()]
print(json.dumps({
    "statuses": statuses,
    "decisions": sum(1 for e in events if e.get("gatekeeper", {}).get("kind") == "decision"),
    "modules": sorted(m for m in sys.modules if m.split(".")[0] == "gatekeeper"),
}))
"""


@pytest.mark.parametrize("config", ["defaults", "demo"])
def test_serving_a_request_loads_no_offline_or_cli_module(tmp_path: Path, config: str) -> None:
    log = tmp_path / "decisions.jsonl"
    overrides: dict[str, object] = {"audit": {"path": str(log)}}
    if config == "defaults":
        # Every setting at its default but the two a start needs: the subjects, and a log path
        # outside the checkout (policy.path, "policies", is the checkout's default pack).
        overrides["identity"] = {"subjects_file": str(SUBJECTS)}
        toml = ""
    else:
        # The demo: GeoIP database (re)built from its YAML source at start, jurisdiction tags.
        overrides["network"] = {
            "trusted_proxies": ["127.0.0.1"],
            "geoip_source": str(DEMO_CONFIG.parent / "geo" / "demo-geo.yaml"),
            "geoip_database": str(tmp_path / "geo.mmdb"),
        }
        toml = str(DEMO_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_ONE, toml, json.dumps(overrides), str(log)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200, 401]
    assert result["decisions"] == 2
    modules: list[str] = result["modules"]
    # The request really went through the stages (not a refusal before them).
    for stage in ("gatekeeper.pipeline", "gatekeeper.policy.embedded", "gatekeeper.reasoning"):
        assert stage in modules
    loaded = [m for m in modules if _is_tooling(m)]
    assert loaded == [], f"the request path loaded offline or command-line modules: {loaded}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, module: str) -> set[str]:
    """Every module ``path`` names in an import statement, anywhere in the file (functions and
    ``if TYPE_CHECKING:`` blocks included), and every dotted module name in a string literal
    (``importlib.import_module``, PEP 562 export tables, ``resources.files``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("gatekeeper.")
            and " " not in node.value
        ):
            names.add(node.value.split(":")[0])
    return names


def _is_tooling(name: str) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in FORBIDDEN)


def test_no_request_path_module_imports_offline_or_cli_code() -> None:
    offenders = []
    request_path = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if _is_tooling(module) or module == "gatekeeper.__main__":
            continue
        request_path.append(module)
        names = sorted(_imported(path, module))
        offenders.extend(f"{module} imports {name}" for name in names if _is_tooling(name))
    assert "gatekeeper.middleware" in request_path  # the walk found the package
    assert offenders == []


def test_the_check_sees_imports_of_every_form(tmp_path: Path) -> None:
    # The static check must not pass for want of looking: each form below names offline or
    # command-line code.
    forms = {
        "absolute": "import gatekeeper.offline.audit.verify\n",
        "from": "from gatekeeper.offline.audit import verify\n",
        "relative": "from ..offline.audit import verify\n",
        "lazy": "def f():\n    from gatekeeper.offline.simulate import simulate\n",
        "string": 'EXPORTS = {"verify_log": "gatekeeper.offline.audit.verify"}\n',
        "cli": "from gatekeeper.cli.progress import ProgressLine\n",
    }
    package = tmp_path / "gatekeeper" / "audit"
    package.mkdir(parents=True)
    for form, source in forms.items():
        path = package / f"{form}.py"
        path.write_text(source)
        names = _imported(path, f"gatekeeper.audit.{form}")
        assert any(_is_tooling(n) for n in names), form
    clean = package / "clean.py"
    clean.write_text(
        "from gatekeeper.audit.log import DecisionLog\nfrom . import canonical\n"
        '"""See ``gatekeeper.offline.audit`` for reading the log."""\n'
    )
    assert not any(_is_tooling(n) for n in _imported(clean, "gatekeeper.audit.clean"))
