"""``jaxstyle``: the command line, a thin layer over the Python API.

Each sub-command lives in its own ``cli_*`` module with a ``register(subparsers)``.
A :class:`UserError` anywhere becomes one line on stderr and exit status 2, with no
traceback and no output file; Ctrl-C exits 130.
"""

from __future__ import annotations

import os
import sys

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
    """Keep compiled programs on disk so a second run skips XLA compilation."""
    import jax

    from jaxstyle.model.weights import home

    path = os.environ.get("JAXSTYLE_COMPILE_CACHE", str(home() / "xla-cache"))
    if path.lower() in ("", "0", "off", "none"):
        return
    jax.config.update("jax_compilation_cache_dir", path)
    # Every program, however quick to compile: a second run must not compile anything.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
