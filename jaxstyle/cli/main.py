"""``jaxstyle``: the command line, a thin layer over the Python API.

Each sub-command lives in its own ``cli_*`` module with a ``register(subparsers)``.
A :class:`UserError` anywhere becomes one line on stderr and exit status 2, with no
traceback and no output file; Ctrl-C exits 130.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from jaxstyle.cli import report
from jaxstyle.cli.options import Parser
from jaxstyle.errors import UserError

COMMANDS = ("stylize", "weights", "batch", "texture", "inpaint", "serve", "video")


def build_parser() -> Parser:
    import importlib

    parser = Parser(
        prog="jaxstyle",
        description="Neural style transfer (Gatys et al.) in JAX: one jit-compiled step, Flax VGG, Optax.",
        epilog="Run `jaxstyle COMMAND --help` for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"jaxstyle.cli.{name}").register(sub)
    return parser


def enable_compile_cache() -> None:
    """Keep compiled programs on disk so a second run skips XLA compilation.

    Before JAX is imported this only sets JAX's own environment variables, so a command
    that never needs JAX (``jaxstyle weights``, a bad option) never pays for importing it.
    The cache key is JAX's (the lowered program, compile options, JAX/XLA version and
    device): a second run of the same command on the same cache adds no file
    (tests/test_startup.py)."""
    from jaxstyle.model.weights import home

    path = os.environ.get("JAXSTYLE_COMPILE_CACHE", str(home() / "xla-cache"))
    if path.lower() in ("", "0", "off", "none"):
        return
    # Every program, however quick to compile: a second run must not compile anything.
    settings = {"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0}
    if "jax" in sys.modules:  # imported already (the CLI called from Python): too late for the environment
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    else:
        os.environ.update({name.upper(): str(value) for name, value in settings.items()})


def main(argv: list[str] | None = None) -> int:
    report.reset_stamps(argv)
    try:
        return _main(argv)
    finally:
        report.release_gc()  # if a command held it and stopped before its first step


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    report.mark("parsed")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        enable_compile_cache()
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"jaxstyle: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("jaxstyle: interrupted; no output written", file=sys.stderr)
        return 130


def entry(argv: list[str] | None = None) -> None:
    """The ``jaxstyle`` program: :func:`main`, then exit without tearing the interpreter down.

    After a run, Python's teardown (freeing JAX's million-odd objects and compiled programs
    one by one) took 0.6–0.9 s on 2 cores, after the output was already on disk. Everything
    a run writes is closed by then (outputs are renamed into place); the ``atexit`` handlers
    (JAX's: wait for pending effects, release the backend, shut a distributed run down;
    logging's flush) still run. The ordinary exit is taken with another non-daemon thread
    alive (it waits for that thread) and under a profiler or tracer (cProfile, coverage),
    which write their results at the ordinary exit."""
    code = main(argv)
    if (sys.getprofile() is not None or sys.gettrace() is not None
            or any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate())):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what the ordinary exit would also lose
            pass
    atexit._run_exitfuncs()  # noqa: SLF001 - the handlers the ordinary exit would run
    os._exit(code)


if __name__ == "__main__":
    entry()
