"""Compiled programs kept on disk whole, so that a second run neither traces nor compiles.

JAX's persistent compilation cache (which the CLI turns on) is keyed by the *lowered*
program, so even a warm run traces and lowers every jit before it can look the program up:
for the optimisation chunk that is most of a small run's start-up. Here each program is
stored with its executable under a key made of everything that decides it *before* tracing:

- the jaxstyle source (a digest of every ``.py`` file in the package) and the versions of
  jax, jaxlib, flax, optax and numpy, whose code is traced along with ours;
- the backend (platform, its version, device kind) and, on CPU, the host's instruction-set
  flags (an executable is machine code for one CPU); ``XLA_FLAGS`` and JAX's configuration;
- the static arguments, pickled (the network's GraphDef pickles with its static attributes,
  the Recipe with every field: tested that each changes the key), and the avals (shape,
  dtype, weak type) and tree structure of the others.

Every program is compiled with :func:`compiler_options` (on CPU: which kernels XLA uses for
convolutions and dots), kept or not. Executables are kept only where JAX's persistent cache
is on (``jax_compilation_cache_dir``), beside it, and only on a single device: a sharded
program's executable also depends on the mesh.
Anything that fails (a file that will not load, a program that cannot be serialised) falls
back to the plain ``jax.jit`` call: never an error, at worst the old start-up time.
The files are pickles of our own executables, trusted as JAX's own cache is: do not point
the cache at a directory others can write.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import platform
import tempfile
import threading
from pathlib import Path

import jax

SUBDIRECTORY = "jaxstyle-executables"
# Beyond this the oldest files (by last use) are removed when a new one is written.
MAX_BYTES = 2 << 30


@functools.cache
def _environment_digest() -> str:
    """What every key shares: our source, the libraries, the backend, the CPU, the config."""
    import flax
    import numpy
    import optax

    h = hashlib.sha256(b"jaxstyle-executables-v2")
    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    device = jax.devices()[0]
    h.update(repr((jax.__version__, jax.lib.__version__, flax.__version__, optax.__version__, numpy.__version__,
                   device.platform, device.device_kind, device.client.platform_version, platform.machine(),
                   os.environ.get("XLA_FLAGS", ""))).encode())
    # Options about caching and logging do not change a program; the rest might.
    h.update(repr(sorted((k, repr(v)) for k, v in jax.config.values.items()
                         if "cache" not in k and "log" not in k)).encode())
    if device.platform == "cpu":
        h.update(_cpu_flags().encode())
    return h.hexdigest()


@functools.cache
def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def directory() -> Path | None:
    """Where executables are kept, or None (no persistent cache, several devices, or tracing
    is off): then every call is the plain jit."""
    base = jax.config.values.get("jax_compilation_cache_dir")
    if not base or jax.config.values.get("jax_disable_jit") or jax.device_count() != 1:
        return None
    return Path(base) / SUBDIRECTORY


def _write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    files = sorted(path.parent.glob("*.exe"), key=lambda p: p.stat().st_atime)
    total = sum(p.stat().st_size for p in files)
    for old in files:
        if total <= MAX_BYTES or old == path:
            break
        total -= old.stat().st_size
        old.unlink(missing_ok=True)


def _unpack(path: Path):
    """Read a kept file as far as JAX's own modules go: (the loaded executable, its flat
    argument info, no_kwargs), and the pickled pytree structures, left for :func:`_finish`.

    Split in two because the structures name flax's, optax's and our classes, whose modules
    may still be importing in another thread when :func:`read_ahead` runs this; the
    executable's own part needs only JAX (deserialising it releases the GIL)."""
    from jax.experimental import serialize_executable as se

    payload, trees = pickle.loads(path.read_bytes())
    unpickler = getattr(se, "_JaxPjrtUnpickler", None)  # JAX's own, private: see _finish
    if unpickler is None:
        return payload, trees
    unloaded, args_info, no_kwargs = unpickler(io.BytesIO(payload), jax.devices()[0].client).load()
    return (unloaded.load(), args_info, no_kwargs), trees


def _finish(parts, trees):
    """The :class:`jax.stages.Compiled` of an :func:`_unpack`, built as JAX's
    ``deserialize_and_load`` builds it (which does the whole load when a JAX without the
    pieces this uses left ``parts`` as the payload)."""
    in_tree, out_tree = pickle.loads(trees)
    if isinstance(parts, bytes):
        from jax.experimental import serialize_executable as se

        return se.deserialize_and_load(parts, in_tree, out_tree)
    loaded, args_info, no_kwargs = parts
    return jax.stages.Compiled(loaded, [], in_tree.unflatten(args_info), out_tree, no_kwargs=no_kwargs)


class _Ahead:
    """One file being read by :func:`read_ahead`: ``result()`` waits for it (None: failed)."""

    def __init__(self):
        self._done = threading.Event()
        self._value = None

    def set(self, value) -> None:
        self._value = value
        self._done.set()

    def result(self):
        self._done.wait()
        return self._value


# Kept files read ahead of their first call (read_ahead): file name -> _Ahead.
_AHEAD: dict[str, _Ahead] = {}
# The kept files this process's programs came from, in the order of first use (remember).
_USED: list[str] = []
# How many command lines' lists of files (remember) are kept; the oldest go first.
MAX_RUNS = 256


def _runs(where: Path, tag: str) -> Path:
    return where / "runs" / f"{hashlib.sha256(tag.encode()).hexdigest()[:32]}.txt"


def read_ahead(tag: str) -> None:
    """Start reading, in a daemon thread, the kept files that the last run under ``tag`` (the
    CLI: its command line and folder) used, as :func:`remember` listed them.

    Deserialising an executable takes XLA 10–200 ms, the optimisation chunk most of it; done
    here it overlaps the imports that follow ``import jax`` instead of delaying the first
    step. A file is still taken only when a program's own key names it, so a list that no
    longer fits (another image size, another source) costs only the other core's time.
    Call it after ``import jax`` has finished: the thread must not import anything."""
    from jax.experimental import serialize_executable  # noqa: F401 - imported here, never in the thread

    # Here too, not in the thread: starting the backend is Python (plugin discovery reads every
    # installed package's metadata), which in a thread would take the GIL from the imports.
    where = directory()
    try:
        names = _runs(where, tag).read_text().split() if where is not None else []
    except OSError:
        return
    waiting = {name: _AHEAD.setdefault(name, _Ahead()) for name in names}

    def work() -> None:
        for name, ahead in waiting.items():
            try:
                ahead.set(_unpack(where / name))
            except Exception:  # noqa: BLE001 - gone or damaged: its program loads or compiles it in order
                ahead.set(None)

    if waiting:
        threading.Thread(target=work, name="jaxstyle-read-ahead", daemon=True).start()


def remember(tag: str) -> None:
    """List, for :func:`read_ahead` in a later run under ``tag``, the kept files this process
    used (written only when the list changed)."""
    where = directory()
    if where is None or not _USED:
        return
    path, text = _runs(where, tag), "\n".join(_USED)
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    try:
        _write(path, text.encode())
        lists = sorted(path.parent.glob("*.txt"), key=lambda p: p.stat().st_mtime)
        for old in lists[:-MAX_RUNS]:
            old.unlink(missing_ok=True)
    except OSError:  # a read-only cache: nothing read ahead next time
        pass


def _load_or_compile(jitted, name: str, args, key: str, where: Path):
    path = where / f"{name}-{key}.exe"
    if path.name not in _USED:
        _USED.append(path.name)
    ahead = _AHEAD.pop(path.name, None)
    unpacked = ahead.result() if ahead is not None else None
    if unpacked is not None or path.is_file():
        try:
            compiled = _finish(*(unpacked or _unpack(path)))
        except Exception:  # noqa: BLE001 - a damaged or stale file is recompiled, never trusted
            path.unlink(missing_ok=True)
        else:
            try:
                os.utime(path)  # last use, for the pruning in _write
            except OSError:  # removed since it was read ahead: the program in memory is still good
                pass
            return compiled
    lowered = jitted.lower(*args)
    # Compiled afresh, not taken from JAX's persistent cache: an XLA:CPU executable that was
    # itself loaded from that cache serialises without its kernels' code (running the copy
    # fails with "Function ... not found").
    enabled = jax.config.values["jax_enable_compilation_cache"]
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        compiled = lowered.compile()
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
    try:
        from jax.experimental import serialize_executable as se

        payload, in_tree, out_tree = se.serialize(compiled)
        trees = pickle.dumps((in_tree, out_tree), protocol=pickle.HIGHEST_PROTOCOL)
        _write(path, pickle.dumps((payload, trees), protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - not serialisable (or a read-only cache): run it unkept
        pass
    return compiled


KERNELS = ("auto", "eigen", "ynnpack")
# XLA options of each CPU kernel choice. With Eigen's kernels the concurrency-optimised
# scheduler (independent thunks run side by side) measured 0.92–1.00 of the time per step at
# 128–192 px, same numbers, same buffer sizes; it is not tried with YNNPACK's.
CPU_OPTIONS = {
    "eigen": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_enable_concurrency_optimized_scheduler": True},
    "ynnpack": {},
}


@functools.cache
def compiler_options() -> tuple[tuple[str, str], ...]:
    """XLA options every program is compiled with, as sorted (name, value) pairs.

    On CPU, convolutions and dots go through XLA's YNNPACK fusions by default, else through
    its Eigen kernels. On a CPU without AVX-512 (AMD EPYC family 25, AVX2 only) Eigen's were
    measured faster at every size tried: a VGG-19 step took 0.82 / 0.76 / 0.91 / 0.89 of the
    YNNPACK program's time at 128 / 192 / 256 / 512 px (Adam; bench/README.md). With AVX-512
    (the family-26 EPYC of earlier runs) YNNPACK's convolutions ran at ~98 % of the matmul
    peak, so they stay there. ``JAXSTYLE_CPU_KERNELS`` = auto | eigen | ynnpack overrides."""
    from jaxstyle.errors import UserError

    choice = os.environ.get("JAXSTYLE_CPU_KERNELS", "auto") or "auto"
    if choice not in KERNELS:
        raise UserError(f"JAXSTYLE_CPU_KERNELS={choice!r} is not one of {', '.join(KERNELS)}")
    if jax.default_backend() != "cpu":
        return ()
    if choice == "auto":
        choice = "ynnpack" if " avx512f" in _cpu_flags() else "eigen"
    return tuple(sorted(CPU_OPTIONS[choice].items()))


class Kept:
    """``jax.jit(f, static_argnums=..., **jit_options)`` compiled with :func:`compiler_options`,
    its executables kept on disk where :func:`directory` says.

    Called like the jit; attributes (``lower``, ...) are the jit's."""

    def __init__(self, f, static_argnums: tuple[int, ...] = (), **jit_options):
        self.f = f
        self.static_argnums = frozenset(static_argnums)
        self.jit_options = dict(jit_options, static_argnums=tuple(static_argnums))
        self.name = getattr(f, "__name__", "program").strip("_")
        self._jits: dict = {}
        self._loaded: dict = {}
        functools.update_wrapper(self, f)

    @property
    def jitted(self):
        """The jit with this process's compiler options."""
        options = compiler_options()
        if options not in self._jits:
            self._jits[options] = jax.jit(self.f, compiler_options=dict(options) or None, **self.jit_options)
        return self._jits[options]

    def __getattr__(self, attr):
        if attr.startswith("_") or attr in ("f", "static_argnums", "jit_options", "name"):
            raise AttributeError(attr)
        return getattr(self.jitted, attr)

    def __call__(self, *args):
        static = tuple(a for i, a in enumerate(args) if i in self.static_argnums)
        dynamic = [a for i, a in enumerate(args) if i not in self.static_argnums]
        leaves, tree = jax.tree.flatten(dynamic)
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            # Inside another trace: part of that program (compiler options belong to the
            # outermost jit only), nothing to keep.
            if None not in self._jits:
                self._jits[None] = jax.jit(self.f, **self.jit_options)
            return self._jits[None](*args)
        jitted = self.jitted
        where = directory()
        if where is None:
            return jitted(*args)
        signature = (static, tree, tuple(jax.typeof(x) for x in leaves), compiler_options())
        compiled = self._loaded.get(signature)
        if compiled is None:
            try:
                h = hashlib.sha256(_environment_digest().encode())
                h.update(pickle.dumps((static, str(tree), [(a.shape, str(a.dtype), a.weak_type) for a in signature[2]],
                                       signature[3])))
            except Exception:  # noqa: BLE001 - a static argument that does not pickle: plain jit
                return jitted(*args)
            compiled = _load_or_compile(jitted, self.name, args, h.hexdigest()[:40], where)
            self._loaded[signature] = compiled
        return compiled(*dynamic)


def kept(static_argnums: tuple[int, ...] = (), **jit_options):
    """Decorator: :class:`Kept` of the function."""
    def wrap(f):
        return Kept(f, static_argnums, **jit_options)
    return wrap


__all__ = ["CPU_OPTIONS", "KERNELS", "Kept", "compiler_options", "directory", "kept", "read_ahead", "remember"]
