"""Where ``jaxstyle video`` keeps its frames: the resumable frame store, output names, encoding.

The frame loop (:mod:`jaxstyle.api.video`) writes every finished frame of every style (and,
with several passes, of every pass and the resized content frames) as a numbered PNG in a
folder and records it; a rerun reads the record to continue. A video output is encoded from
its folder when the last frame is done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio
from jaxstyle.io import video as videoio


class FrameStore:
    """Stylized frames of one output as numbered PNGs in ``folder`` plus a record.

    Frame ``i`` of the source is ``folder/{i:06d}.png``. It is written atomically, *then* a
    line ``{"frame": i, "fingerprint": …}`` is appended to ``folder/.jaxstyle-video.jsonl``
    and fsynced. Frames count as finished only when they are recorded with the run's
    fingerprint and exist, so a run killed at any moment resumes from its last finished
    frame, and another clip, style or option set starts over.
    """

    RECORD = ".jaxstyle-video.jsonl"

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.record = self.folder / self.RECORD

    def path(self, i: int) -> Path:
        return self.folder / f"{i:06d}.png"

    def finished(self) -> set[int]:
        """Frames recorded with this fingerprint whose files exist. Call once, before saving."""
        done = set()
        try:
            text = self.record.read_text()
        except OSError:
            return done
        if text and not text.endswith("\n"):
            # kill -9 mid-line: end the torn line so the next record starts on its own.
            with open(self.record, "a") as f:
                f.write("\n")
        lines = text.splitlines()
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line after kill -9
            if r.get("fingerprint") == self.fingerprint and self.path(int(r["frame"])).exists():
                done.add(int(r["frame"]))
        return done

    def save(self, i: int, rgb01: np.ndarray) -> np.ndarray:
        """Write frame ``i``; returns it as read back (uint8), for exact resumes."""
        u8 = imageio.to_uint8(rgb01)
        imageio.save_image(self.path(i), u8)
        with open(self.record, "a") as f:
            f.write(json.dumps({"frame": i, "fingerprint": self.fingerprint}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return u8

    def load(self, i: int) -> np.ndarray:
        return imageio.load_image(self.path(i))



def digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def identity(x) -> str:
    if isinstance(x, np.ndarray):
        return "array:" + hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:24]
    p = Path(x)
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def style_name(style, index: int) -> str:
    return Path(style).stem if not isinstance(style, np.ndarray) else f"style{index}"


def output_paths(output: str | os.PathLike, styles: Sequence, source_is_video: bool,
                 video_suffix: str = ".mp4") -> list[Path]:
    """One output per style: ``output`` itself for one style; ``{style}`` filled in; else a
    folder with ``<style>.<suffix>`` (video input) or ``<style>/`` (frames) in it."""
    text = os.fspath(output)
    names = [style_name(s, k) for k, s in enumerate(styles)]
    if len(set(names)) != len(names):
        names = [f"{n}-{k}" for k, n in enumerate(names)]
    if len(styles) == 1:
        return [Path(text.replace("{style}", names[0]))]
    if "{style}" in text:
        return [Path(text.replace("{style}", n)) for n in names]
    if videoio.is_video_file(text):
        raise UserError(f"{text!r}: {len(styles)} styles need a folder or a name with {{style}} in it")
    return [Path(text) / (n + video_suffix if source_is_video else n) for n in names]


def open_stores(output, styles: Sequence, source: videoio.Source | None,
                fingerprint: Callable[[object], str]) -> tuple[list[Path], list[FrameStore]]:
    """The outputs of ``output`` (a path, or a list with one per style) and a
    :class:`FrameStore` for each; refuses an output that is (or holds) the input. ``fingerprint(style)``:
    the key of everything the frames of that style depend on (see :class:`FrameStore`)."""
    is_video = source is not None and source.video is not None
    outs = [Path(o) for o in output] if isinstance(output, (list, tuple)) else \
        output_paths(output, styles, is_video, source.video.suffix.lower() if is_video else ".mp4")
    if len(outs) != len(styles):
        raise UserError(f"{len(outs)} outputs for {len(styles)} styles; give one per style")
    sources = {p.resolve() for p in ((source.video,) if is_video else source.files)} if source else set()
    # Numbered frames written into a folder of input frames could replace them.
    input_dirs = {q.parent for q in sources} if not is_video else set()
    stores = []
    for o, s in zip(outs, styles):
        if o.resolve() in sources or store_folder(o).resolve() in input_dirs:
            raise UserError(f"{str(o)!r} is (or holds) the input; choose another output")
        if videoio.is_video_file(o):
            videoio.check_video_output(o)
        folder = store_folder(o)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{str(folder)!r}: cannot write the output ({e.strerror or e})") from None
        stores.append(FrameStore(folder, fingerprint(s)))
    return outs, stores


def store_folder(out: Path) -> Path:
    """Where the frames of ``out`` are kept while it is made (the folder itself for frames)."""
    if videoio.is_video_file(out):
        return out.with_name(f".{out.name}.frames")
    return out


def work_folder(out: Path) -> Path:
    """Where the earlier passes and the resized content frames of a multi-pass run are kept
    (inside the store folder, so a video output's clean-up removes them too)."""
    return store_folder(out) / ".jaxstyle-passes"


def load_all(stores: Sequence[FrameStore], i: int) -> np.ndarray:
    """Frame ``i`` of every store, (B,H,W,3) RGB [0,1]."""
    return np.stack([imageio.to_float(s.load(i)) for s in stores])


def save_all(stores: Sequence[FrameStore], i: int, images) -> np.ndarray:
    """Write frame ``i`` of each image to its store; returns what was written, (B,H,W,3) RGB
    [0,1]: what is on disk is what later frames warp and blend, so a resumed run is exact."""
    return np.stack([imageio.to_float(s.save(i, np.asarray(o))) for s, o in zip(stores, images)])


def encode(store: FrameStore, indices: Sequence[int], out: Path, fps, *, audio_from=None,
           audio_range=(0.0, None)) -> Path:
    """Encode the stored frames ``indices`` into the video ``out`` (atomic), audio copied."""
    writer = videoio.VideoWriter(out, fps, audio_from=audio_from, audio_range=audio_range)
    try:
        for i in indices:
            writer.write(store.load(i))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


__all__ = ["FrameStore", "digest", "encode", "identity", "load_all", "open_stores", "output_paths", "save_all", "store_folder",
           "style_name", "work_folder"]
