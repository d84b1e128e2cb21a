"""The emulator is a second implementation of the API: it uses nothing of the provider's client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import airflow_provider_dgsentiment.emulator as emulator_package

PACKAGE = "airflow_provider_dgsentiment"
EMULATOR = f"{PACKAGE}.emulator"
EMULATOR_DIR = Path(emulator_package.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: ``.x`` is in the emulator, ``..x`` in the package beside it
                base = EMULATOR if node.level == 1 else PACKAGE
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names


def test_emulator_modules_import_only_the_emulator_from_the_package():
    sources = sorted(EMULATOR_DIR.glob("*.py"))
    assert {path.name for path in sources} >= {"server.py", "scoring.py", "tokens.py", "pytest_plugin.py"}

    outside = {
        path.name: sorted(
            name
            for name in _imported_modules(path)
            if (name == PACKAGE or name.startswith(f"{PACKAGE}.")) and not name.startswith(EMULATOR)
        )
        for path in sources
    }

    assert outside == {path.name: [] for path in sources}


def test_a_running_emulator_loads_no_client_module():
    script = (
        "import sys, json, urllib.request\n"
        "from airflow_provider_dgsentiment.emulator import EmulatorServer\n"
        "with EmulatorServer(api_key='k') as server:\n"
        "    request = urllib.request.Request(\n"
        "        server.url + '/v1/read?sentiment=true&language=en',\n"
        "        data=json.dumps({'text': 'I love it. I hate it.'}).encode(),\n"
        "        headers={'Authorization': 'Token k', 'Content-Type': 'application/json'},\n"
        "    )\n"
        "    assert urllib.request.urlopen(request, timeout=10).status == 200\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('airflow_provider_dgsentiment'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=EMULATOR_DIR.parents[1]
    )

    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert f"{EMULATOR}.server" in loaded and f"{EMULATOR}.tokens" in loaded
    assert {module for module in loaded if not module.startswith(EMULATOR)} == {PACKAGE}
