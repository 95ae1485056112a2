"""The README's tour runs top to bottom as written, in a fresh directory and home, against a real hub.

From "A five-minute tour" to the end of "The hub from the command line": ``python`` blocks run in one interpreter
(later blocks use the names of earlier ones), ``$ `` lines of ``console`` blocks and the lines of ``bash`` blocks run
in a shell, in order (``sh`` blocks are deployment examples, such as a server fronting huggingface.co, and are not
run). The ``export HF_ENDPOINT=… HF_TOKEN=…`` block is what the hub fixture provides; the README's
``http://127.0.0.1:8000`` and ``oc_...`` stand for the fixture's URL and admin token.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from tests import zygote
from tests.hubtools import HubProcess

README = Path(__file__).resolve().parents[1] / "README.md"
FIRST, LAST = "## A five-minute tour of the library", "### The hub from the command line"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DIFFERENCES_EXPECTED = ("openckpt diff",)
"""Commands whose exit 1 (differences found) is what the tour shows."""

DRIVER = """
import json, subprocess, sys
steps = json.load(open(sys.argv[1]))
namespace = {"__name__": "__readme__"}
for i, (kind, text, ok_codes) in enumerate(steps):
    print(f"--- step {i} ({kind}): {text.splitlines()[0] if text else ''}", flush=True)
    if kind == "python":
        exec(compile(text, f"README python block {i}", "exec"), namespace)
    else:
        code = subprocess.run(text, shell=True).returncode
        if code not in ok_codes:
            sys.exit(f"README step {i} exited {code}: {text}")
"""


def tour_blocks() -> list[tuple[str, str]]:
    """(language, code) of the tour's fenced blocks, in order."""
    text = README.read_text()
    start = text.index(FIRST)
    end_of_last = text.find("\n## ", text.index(LAST))
    section = text[start : end_of_last if end_of_last != -1 else len(text)]
    return [(lang, code) for lang, code in FENCE.findall(section) if lang in ("python", "bash", "console")]


def steps_for(hub: HubProcess) -> list[tuple[str, str, list[int]]]:
    def local(code: str) -> str:
        return code.replace("http://127.0.0.1:8000", hub.url).replace("oc_...", hub.token)

    steps: list[tuple[str, str, list[int]]] = []
    for lang, code in tour_blocks():
        if lang == "python":
            steps.append(("python", local(code), [0]))
        elif lang == "console":
            for line in code.splitlines():
                if line.startswith("$ "):
                    command = local(line[2:])
                    ok = [0, 1] if command.startswith(DIFFERENCES_EXPECTED) else [0]
                    steps.append(("shell", command, ok))
        elif "export HF_ENDPOINT" not in code:
            for line in code.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    steps.append(("shell", local(line), [0]))
    return steps


def test_the_tour_has_the_blocks_this_test_runs() -> None:
    kinds = [lang for lang, _ in tour_blocks()]
    assert kinds.count("python") >= 3 and "console" in kinds and "bash" in kinds


def test_the_readme_tour_runs(hub: HubProcess, tmp_path: Path) -> None:
    work, home = tmp_path / "tour", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (tmp_path / "steps.json").write_text(json.dumps(steps_for(hub)))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.token,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "HF_HOME": str(home / ".cache" / "huggingface"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # A fresh machine: none of what other tests of the session may have set (HF_HUB_OFFLINE by the scan corpus).
    for variable in ("OPENCKPT_CONFIG", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "COLUMNS"):
        env.pop(variable, None)
    result = zygote.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "steps.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert (work / "tiny" / "model.safetensors").is_file()  # the last step pulled the pushed model
    manifest = json.loads((work / "runs" / "demo" / "step-00000030" / "openckpt.json").read_text())
    assert manifest["training"]["samples_seen"] == 960  # 30 batches of 32, counted by the loader
    assert re.search(r"^samples_seen +960 *$", result.stdout, re.MULTILINE)  # and shown by inspect, as the README says
    assert "tokens_seen" not in result.stdout  # the loop counts no tokens: nothing is shown rather than 0
    card = (work / "tiny" / "README.md").read_text()
    assert "license: apache-2.0" in card  # the card of the Python block's upload kept its license
