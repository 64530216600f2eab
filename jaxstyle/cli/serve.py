"""``jaxstyle serve``: the local web app (live preview, persistent queue, continuous batching)."""

from __future__ import annotations

import ipaddress
import sys

from jaxstyle.errors import UserError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the local web app: upload images, watch them being stylized, a persistent job queue",
        description="Serve a page and a JSON API on HOST:PORT. Jobs, inputs and results persist in "
        "$JAXSTYLE_HOME/serve/ (or --db); after a crash or restart every queued or running job runs "
        "again. Compatible jobs (same recipe and image shape) share one vmapped compiled step.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but loopback lets other machines use it (a warning is printed)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    p.add_argument("--db", default=None, metavar="DIR",
                   help="folder for the job database, inputs and results (default: $JAXSTYLE_HOME/serve)")
    p.add_argument("--max-batch", type=int, default=4, metavar="N", help="jobs sharing one compiled step at most")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="jobs waiting or running at most; more are refused with 429")
    p.add_argument("--max-size", type=int, default=1024, metavar="PX", help="largest --size a job may ask for")
    p.add_argument("--max-steps", type=int, default=5000, metavar="N", help="most steps a job may ask for")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest request body")
    p.add_argument("--max-pixels", type=int, default=40_000_000, metavar="N", help="largest decoded upload")
    p.add_argument("--weights", default=None, metavar="SPEC",
                   help="VGG weights: a .safetensors/.pth PATH, or random:SEED for untrained test weights "
                   "(default: the cached download for each job's preset)")
    p.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise UserError("jaxstyle serve needs its extra: pip install 'jaxstyle[serve]'") from None
    from jaxstyle.serve import options as serve_options
    from jaxstyle.serve.app import create_app
    from jaxstyle.serve.scheduler import Scheduler
    from jaxstyle.serve.store import Store

    for name in ("max_batch", "max_queue", "max_size", "max_steps", "max_pixels"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= args.port < 65536:
        raise UserError(f"--port {args.port} is not a TCP port")
    limits = serve_options.Limits(max_size=args.max_size, max_steps=args.max_steps,
                                  max_bytes=int(args.max_upload_mb * (1 << 20)), max_pixels=args.max_pixels)
    loopback = _is_loopback(args.host)
    if not loopback:
        print(f"jaxstyle: WARNING: serving on {args.host}: anyone who can reach this address can submit jobs, "
              "read every job's images and use this machine's accelerator; there is no login", file=sys.stderr)
    store = Store(args.db)
    if store.recovered:
        print(f"jaxstyle: {store.recovered} job(s) interrupted by the last shutdown run again", file=sys.stderr)
    scheduler = Scheduler(store, weights=args.weights, max_batch=args.max_batch, limits=limits).start()
    hosts = ("127.0.0.1", "localhost", "[::1]") if loopback else ("*",)
    app = create_app(store, scheduler, limits=limits, max_queue=args.max_queue, allowed_hosts=hosts)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    def announce():
        # The real port (with --port 0) is known once the socket is bound.
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
                shown = f"[{args.host}]" if ":" in args.host else args.host
                print(f"jaxstyle: serving on http://{shown}:{port}/  (data in {store.folder}; Ctrl-C stops)",
                      file=sys.stderr, flush=True)
                return

    original = server.startup

    async def startup(sockets=None):
        await original(sockets=sockets)
        announce()

    server.startup = startup
    try:
        server.run()
    finally:
        scheduler.stop()
        store.close()
    return 0
