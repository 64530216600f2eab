"""Start-up (issue 14): nothing heavy at import time, and a warm compile cache is never
missed.

- ``import jaxstyle``, ``jaxstyle --help``, every command's ``--help`` and ``jaxstyle weights
  list`` never import JAX (nor Flax/Optax): checked in a fresh interpreter's ``sys.modules``.
- A second identical CLI run on the same ``JAXSTYLE_COMPILE_CACHE`` adds no file to it: every
  program it needs was found under the key the first run wrote (a key that changed from run
  to run, e.g. from a path, a time or an object id in the program, would recompile each time);
  it traces none of them (each is loaded whole) and writes the same image and losses.
- The first run lists the kept programs it used (``engine.executables.remember``), under its
  command line less the output path: the second run (another output) reads them ahead.
- ``python -m jaxstyle`` skips the interpreter's teardown but still runs the ``atexit``
  handlers, flushes what it printed and returns the command's exit status.
- ``JAXSTYLE_TRACE_STARTUP=1`` prints the phase stamps ``bench/startup.py`` reads, and the
  ``--json`` record carries ``first_step_seconds``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CLI_OPTS, write_image

HEAVY = ("jax", "jaxlib", "flax", "optax", "ml_dtypes")


def heavy_modules_after(code: str, tmp_path) -> list[str]:
    probe = f"""
import sys
{code}
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    env = {**os.environ, "JAXSTYLE_HOME": str(tmp_path / "home"), "JAXSTYLE_COMPILE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_import_and_help_do_not_import_jax(tmp_path):
    assert heavy_modules_after("import jaxstyle; jaxstyle.__version__", tmp_path) == []
    calls = [[], ["--help"], ["weights", "list"]] + [[c, "--help"] for c in
                                                     ("stylize", "batch", "texture", "inpaint", "video", "serve", "weights")]
    code = "from jaxstyle.cli.main import main\nimport contextlib, io\n"
    for argv in calls:
        code += (f"with contextlib.redirect_stdout(io.StringIO()):\n    try: main({argv!r})\n"
                 f"    except SystemExit: pass\n")
    assert heavy_modules_after(code, tmp_path) == []
    # ... nor does a bad option, found before anything starts
    bad = "from jaxstyle.cli.main import main\ntry: main(['stylize', 'a.png', 'b.png', '-o', 'x.png', '--steps', 'many'])\nexcept SystemExit: pass\n"
    assert heavy_modules_after(bad, tmp_path) == []


STAMP = re.compile(r"^jaxstyle: startup: \+([0-9.]+) s (.+)$", re.M)


@pytest.mark.slow  # two CLI processes, one of them compiling (about 10–20 s on 2 cores)
def test_second_run_on_a_warm_cache_compiles_nothing(tmp_path, tiny_weights):
    content, style = write_image(tmp_path / "c.png", 48, 64, 1), write_image(tmp_path / "s.png", 40, 40, 2)
    cache = tmp_path / "xla-cache"
    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(cache), "JAXSTYLE_TRACE_STARTUP": "1", "JAX_LOG_COMPILES": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)

    programs = []

    def run(i: int) -> tuple[set[Path], dict, dict]:
        # The lists of programs each command line used (runs/) are not compiled programs.
        done = subprocess.run(
            [sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(tmp_path / f"o{i}.png"),
             "--weights", tiny_weights, *CLI_OPTS, "--steps", "1", "--json", "-q"],
            capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        stamps = {name: float(t) for t, name in STAMP.findall(done.stderr)}
        programs.append(set(re.findall(r"Finished tracing (\w+) for jit", done.stderr)))
        return ({p for p in cache.rglob("*") if p.is_file() and p.parent.name != "runs"}, json.loads(done.stdout),
                stamps)

    first, record, stamps = run(1)
    assert first, "the first run wrote nothing to the compile cache"
    # Only jaxstyle's own jit boundaries, no eager jnp operation's program ...
    assert programs[0] == {"features", "style_statistics", "blend_style", "finish_style", "grad_kernels",
                           "init_states", "_chunk", "finals"}, programs[0]
    (listed,) = [f.read_text().split() for f in cache.rglob("runs/*.txt")]  # for the next run to read ahead
    assert sorted(listed) == sorted(p.name for p in first if p.suffix == ".exe") and len(listed) == 8
    second, record2, stamps2 = run(2)
    assert second == first, f"the second run compiled again: {sorted(p.name for p in second - first)}"
    # ... and a warm start traces none of them: each is loaded whole (jaxstyle.engine.executables)
    assert programs[1] == set(), f"the second run traced {sorted(programs[1])}"
    assert record2["losses"] == record["losses"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o1.png")), np.asarray(Image.open(tmp_path / "o2.png")))
    assert len(list(cache.rglob("runs/*.txt"))) == 1  # the same command line but for its output
    # The stamps: every phase, in order, the first step within the run's own time.
    for s, r in ((stamps, record), (stamps2, record2)):
        assert list(s) == ["parsed", "imported", "inputs", "network", "first step", "written"], s
        assert list(s.values()) == sorted(s.values())
        assert r["first_step_seconds"] == pytest.approx(s["first step"], abs=0.002)
        assert 0 < r["first_step_seconds"] < 600 and r["precision"] == "fp32"


def test_read_ahead_goes_by_the_command_line_less_its_output(monkeypatch):
    from jaxstyle.cli import report

    def tag(argv):
        report.reset_stamps(argv)
        return report._tag()

    base = ["stylize", "c.png", "s.png", "--size", "64"]
    assert tag([*base, "-o", "a.png"]) == tag([*base, "-o", "b.png"]) == tag([*base, "--output=c.png"])
    assert tag([*base, "-o", "a.png"]) != tag(["stylize", "c.png", "t.png", "--size", "64", "-o", "a.png"])
    assert tag([*base, "-o", "a.png"]) != tag([*base, "--steps", "3", "-o", "a.png"])
    here = tag(base)
    monkeypatch.chdir("/")
    assert tag(base) != here  # relative paths name other files in another folder


def test_program_exit_runs_atexit_handlers_and_keeps_the_status(tmp_path):
    """``python -m jaxstyle`` leaves with ``os._exit`` after the command (no interpreter
    teardown): what the ordinary exit guarantees must still happen."""
    marker = tmp_path / "atexit-ran"
    env = {**os.environ, "JAXSTYLE_HOME": str(tmp_path / "home")}
    probe = (f"import atexit, pathlib; atexit.register(pathlib.Path({str(marker)!r}).write_text, 'ran')\n"
             "import sys; from jaxstyle.cli.main import entry; entry(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", probe, "weights", "list"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "ran"
    assert "no cached weights" in done.stdout.lower()  # printed, and flushed into the pipe before the exit
    marker.unlink()
    bad = subprocess.run([sys.executable, "-c", probe, "stylize", str(tmp_path / "missing.png"), "s.png", "-o",
                          str(tmp_path / "o.png")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "jaxstyle: error:" in bad.stderr
    assert marker.read_text() == "ran"
    # The module entry point is the same one.
    assert subprocess.run([sys.executable, "-m", "jaxstyle", "stylize", str(tmp_path / "missing.png"), "s.png", "-o",
                           str(tmp_path / "o.png")], capture_output=True, env=env, timeout=120).returncode == 2


def test_collector_held_only_until_the_first_step(tmp_path, tiny_weights, images):
    import gc

    from jaxstyle.cli import report
    from jaxstyle.cli.main import main

    seen = []
    real_mark = report.mark

    def mark(phase):
        seen.append((phase, gc.isenabled()))
        return real_mark(phase)

    content, style = images
    args = ["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--weights", tiny_weights, *CLI_OPTS, "-q"]
    report.mark = mark
    try:
        assert main(args) == 0
    finally:
        report.mark = real_mark
    held = dict(reversed(seen))  # each phase as first marked (the bar marks "first step" at every report)
    assert held["network"] is False and held["first step"] is False  # held while starting
    assert held["written"] is True  # back from the first step on
    assert gc.isenabled()
    # a command that fails before its first step gives it back too
    assert main(["stylize", str(tmp_path / "missing.png"), str(style), "-o", str(tmp_path / "x.png"),
                 "--weights", tiny_weights, *CLI_OPTS, "-q"]) == 2
    assert gc.isenabled()
