"""The runtime depends on the plugin interface only: any installed filter brings its own
``train``/``score``/``bench`` commands, and ``broker/`` imports no filter by name."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLOWED = {"filters", "filters.base"}  # the plugin interface

PLUGIN = '''
import argparse
import numpy as np
from filters.base import Filter, FilterResult


class EchoFilter(Filter):
    name = "echo"
    version = "0.1"
    fields = {"ztf": ("rb",)}
    commands = "echo_plugin"

    def score(self, batch):
        return FilterResult(np.zeros(batch.n), [None] * batch.n)


def train(argv):
    p = argparse.ArgumentParser(prog="alert-broker train echo")
    p.add_argument("--epochs", type=int, required=True)
    print(f"echo trained for {p.parse_args(argv).epochs} epochs")
    return 0


def score(argv):
    print("echo scored " + " ".join(argv))
    return 0


def bench(device):
    return {"summary": f"echo bench on {device}"}
'''


def _third_party(tmp: Path) -> dict:
    (tmp / "echo_plugin.py").write_text(PLUGIN)
    info = tmp / "echo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[alert_broker.filters]\necho = echo_plugin:EchoFilter\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp), str(REPO)]))


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "broker.tools.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def test_a_third_party_filter_is_trained_scored_and_benched_through_the_cli(tmp_path):
    env = _third_party(tmp_path)
    assert _cli(env, "train", "echo", "--epochs", "3").stdout.strip() == "echo trained for 3 epochs"
    assert _cli(env, "score", "echo", "a.csv", "b.csv").stdout.strip() == "echo scored a.csv b.csv"
    bad = _cli(env, "train", "echo")
    assert bad.returncode == 2 and "--epochs" in bad.stderr
    missing = _cli(env, "train", "nosuch")
    assert missing.returncode == 2 and "no installed filter 'nosuch'" in missing.stderr
    code = ("from broker.tools.bench import bench_filter_hooks; r = bench_filter_hooks('cpu'); "
            "print(r['echo']['summary'])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.stdout.strip().splitlines()[-1] == "echo bench on cpu", run.stderr[-2000:]


def test_built_in_filters_bring_their_commands():
    help_text = _cli(dict(os.environ), "train", "badamp", "--help").stdout
    assert "--max-evals" in help_text and "alert-broker train badamp" in help_text
    assert "--combine" in _cli(dict(os.environ), "score", "transit", "--help").stdout


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_the_runtime_imports_no_filter_module_but_the_plugin_interface():
    offenders = {}
    for path in sorted((REPO / "broker").rglob("*.py")):
        bad = {m for m in _imports(path) if (m == "filters" or m.startswith("filters.")) and m not in ALLOWED}
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, offenders


def test_the_runtime_core_does_not_import_the_tools():
    """codec, surveys, batch, pipeline, ... never reach up into cli, demo, replay, tail, bench."""
    offenders = {}
    for path in sorted((REPO / "broker").rglob("*.py")):
        if "tools" in path.relative_to(REPO / "broker").parts:
            continue
        bad = {m for m in _imports(path) if m.startswith("broker.tools")}
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, offenders


def test_no_import_circles_in_the_runtime_or_the_filters():
    """Counting imports inside functions too: a circle there only waits for its first call."""
    modules = {}
    for package in ("broker", "filters"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in graph[start])

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert not circles, circles
