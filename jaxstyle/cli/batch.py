"""``jaxstyle batch --content SRC… --style SRC… [--pairs product|zip|FILE] -o OUTDIR``."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from jaxstyle.cli import report
from jaxstyle.cli.options import add_config_options, config_from_args, overrides
from jaxstyle.errors import UserError

SOURCES_HELP = "files, folders, globs or tfds:NAME[/CONFIG]:SPLIT[SLICE]; repeatable"


def _batch_size(text: str):
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(text)
    return value


_batch_size.__name__ = "batch size (a positive integer or auto)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="stylize many content/style pairs: batched, sharded over devices and hosts, resumable",
        description="Stylize every pair in one run: pairs of one output shape are optimised together "
        "in one compiled step, sharded over all local devices. Each finished pair is saved as "
        "OUTDIR/CONTENT__STYLE.EXT and recorded in OUTDIR/results.jsonl; rerunning the same command "
        "skips finished pairs. Ctrl-C or SIGTERM stops after recording finished work.",
    )
    p.add_argument("--content", action="extend", nargs="+", metavar="SRC", help=f"content images: {SOURCES_HELP}")
    p.add_argument("--style", action="extend", nargs="+", metavar="SRC", help=f"style images: {SOURCES_HELP}")
    p.add_argument("--pairs", default="product", metavar="HOW",
                   help="product (every content with every style), zip (i-th with i-th), or a .jsonl/.csv "
                   "manifest with columns content, style, optional output and per-pair options (default: product)")
    p.add_argument("-o", "--output", dest="outdir", required=True, metavar="OUTDIR",
                   help="output folder (created); outputs are written atomically")
    p.add_argument("--format", default="png", choices=("png", "jpg", "webp", "tif"),
                   help="output image format (default: png)")
    p.add_argument("--batch-size", type=_batch_size, default=None, metavar="N",
                   help="pairs each device optimises at once; a step runs N × devices pairs "
                   "(default: auto, from free memory and the image size, at most 4 on CPU)")
    p.add_argument("--contact-sheet", metavar="FILE", help="also write a grid image: contents × styles")
    p.add_argument("--contact-sheet-cell", type=int, default=192, metavar="PX",
                   help="cell size of the contact sheet (default: 192)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    hosts = p.add_argument_group("several hosts (jax.distributed)")
    hosts.add_argument("--distributed", action="store_true",
                       help="start jax.distributed; each process runs its own share of the pairs")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (or $JAX_COORDINATOR_ADDRESS)")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="number of processes (or $JAX_NUM_PROCESSES)")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process's index (or $JAX_PROCESS_ID)")
    add_config_options(p)
    p.set_defaults(func=run)


class _Stop:
    """First SIGINT/SIGTERM: finish recording and stop at the next step; second: at once."""

    def __init__(self):
        self.signum = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(f"\njaxstyle: {signal.Signals(signum).name}: stopping after the current step "
              "(again to stop at once)", file=sys.stderr)

    def __call__(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def run(args) -> int:
    report.prefetch_network(args)  # while the imports below run
    from tqdm import tqdm

    from jaxstyle.api import batch
    from jaxstyle.engine.loop import batch_mesh
    from jaxstyle.io import image as imageio
    from jaxstyle.io import sheet

    t_start = time.perf_counter()
    index, count = 0, 1
    if args.distributed:
        # First: making a config asks JAX for its backend (--precision auto), which starts the
        # runtime, and jax.distributed must start before the runtime does.
        index, count = batch.start_distributed(args.coordinator, args.num_processes, args.process_id)
    elif args.coordinator or args.num_processes or args.process_id is not None:
        raise UserError("--coordinator, --num-processes and --process-id need --distributed")
    cfg = config_from_args(args)  # every option checked before anything slow starts
    outdir = Path(args.outdir)
    if args.contact_sheet:
        imageio.check_output_path(args.contact_sheet)
    if args.contact_sheet_cell < 16:
        raise UserError(f"--contact-sheet-cell must be >= 16, got {args.contact_sheet_cell}")
    # Inputs and per-pair options are checked before anything slow starts.
    jobs = batch.make_jobs(args.content, args.style, outdir, pairs=args.pairs, preset=args.preset,
                           ext="." + args.format, exclude=[args.contact_sheet] if args.contact_sheet else [],
                           **overrides(args))
    for line in jobs.skipped[:20]:  # a bad manifest row is reported, skipped and never done
        print(f"jaxstyle: skipped {line}", file=sys.stderr)
    if len(jobs.skipped) > 20:
        print(f"jaxstyle: ... and {len(jobs.skipped) - 20} more rows skipped", file=sys.stderr)
    # The output folder is made and proved writable before the weights are loaded.
    outdir = imageio.check_output_folder(outdir)
    network, info, metadata, cfg = report.load_network(args, cfg)
    jobs = batch.for_network(jobs, cfg.network)
    plan = batch.make_plan(jobs, outdir, weights_id=batch.weights_id(info), process_index=index, process_count=count)
    if any(j.cfg.recipe.optimizer == "lbfgs-zoom" for j in plan.pending):
        print("jaxstyle: note: --optimizer lbfgs-zoom runs one pair per device at a time "
              "(its line search does not vectorise)", file=sys.stderr)
    mesh = batch_mesh()
    who = f"process {index}/{count}: " if count > 1 else ""
    bar = tqdm(total=len(plan.pending), disable=args.quiet, file=sys.stderr, unit="pair", dynamic_ncols=True,
               desc=f"{who}batch")
    stop = _Stop()
    failed, made = [], 0

    def on_step(step: int, total: int, pairs: int) -> None:
        bar.set_postfix_str(f"step {step}/{total} of {pairs} pair{'s' * (pairs > 1)} on {mesh.size} "
                            f"device{'s' * (mesh.size > 1)}" + (f", {len(failed)} failed" if failed else ""))

    engine = batch.Engine(network, batch_size=args.batch_size, mesh=mesh, should_stop=stop, on_step=on_step)
    try:
        for result in batch.execute(plan, network, metadata=metadata, engine=engine):
            if result.status == "ok":
                made += 1
            else:
                failed.append(result)
            bar.update(1)
    finally:
        bar.close()
        stop.restore()
    manifest_name = f"results.p{index}.jsonl" if count > 1 else "results.jsonl"
    record = {
        "outdir": str(outdir), "process": index, "processes": count, "pairs": len(plan.jobs), "all_pairs": plan.total,
        "made": made, "skipped": len(plan.done), "failed": len(failed), "bad_rows": len(jobs.skipped), "seconds": round(time.perf_counter() - t_start, 3),
        "precision": cfg.recipe.precision,  # the command's; a pairs-file row may set its own
        "manifest": str(outdir / manifest_name), "stopped": bool(stop.signum),
    }
    if stop.signum:
        print(f"jaxstyle: stopped by {signal.Signals(stop.signum).name}: {made} pairs made and recorded in "
              f"{record['manifest']}; rerun the same command to finish", file=sys.stderr)
        if args.json:
            print(json.dumps(record, sort_keys=True))
        return 128 + stop.signum
    for r in failed[:5]:
        print(f"jaxstyle: failed: {r.pair}: {r.error}", file=sys.stderr)
    if len(failed) > 5:
        print(f"jaxstyle: ... and {len(failed) - 5} more failures (status \"failed\" in {manifest_name})",
              file=sys.stderr)
    print(f"jaxstyle: {who}{len(plan.jobs)} pairs: {made} made, {len(plan.done)} already done, {len(failed)} failed "
          f"in {record['seconds']:.1f} s ({cfg.recipe.precision}); outputs and {manifest_name} in {outdir}", file=sys.stderr)
    if count > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxstyle batch done")  # every share recorded
    if args.contact_sheet and index == 0:
        path = sheet.contact_sheet(args.contact_sheet, plan.all_jobs, outdir, cell=args.contact_sheet_cell)
        print(f"jaxstyle: wrote contact sheet {path}", file=sys.stderr)
    if args.json:  # last, after the barrier, whose runtime may print on stdout too
        print(json.dumps(record, sort_keys=True), flush=True)
    return 1 if failed or jobs.skipped else 0
