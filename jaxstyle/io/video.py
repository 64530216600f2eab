"""Video frames in and out, streamed: PyAV (FFmpeg inside the wheel) and folders of images.

A source yields ``uint8`` H×W×3 RGB frames one at a time, never the whole clip; a writer
encodes them one at a time into a temporary file beside the output and renames it into
place when closed (an interrupted run never leaves a half-written video), copying the
input's audio when there is one. Every problem a user can cause (missing or broken file,
unknown container, truncated stream) is a one-line :class:`UserError` naming the file.
"""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from jaxstyle.errors import UserError
from jaxstyle.io import image as imageio

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
# (codec, pixel format) per output container. 4:2:0 needs even sides: odd frames use 4:4:4.
_ENCODERS = {
    ".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p"), ".gif": ("gif", "rgb8"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_FPS = Fraction(24)


def _av():
    try:
        import av
    except ImportError:
        raise UserError("video needs PyAV and OpenCV: pip install 'jaxstyle[video]'") from None
    return av


def _why(e: Exception) -> str:
    return " ".join(str(getattr(e, "strerror", None) or e).split()) or type(e).__name__


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Source:
    """A clip: where it comes from, its frame rate and (when known) its frame count."""

    name: str
    fps: Fraction
    count: int | None  # frames in the clip (None: the container does not say)
    files: tuple[Path, ...] = ()  # frames folder/glob
    video: Path | None = None  # video file
    has_audio: bool = False

    def identity(self) -> str:
        """Names this clip for caches: path, size and time stamp of every file it reads."""
        paths = (self.video,) if self.video is not None else self.files
        parts = []
        for p in paths:
            st = p.stat()
            parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
        return "\n".join(parts)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index, uint8 H×W×3) for frames ``start <= index < stop``, decoded one at a time."""
        if self.video is None:
            for i, p in enumerate(self.files[start:stop], start):
                yield i, imageio.load_image(p)
            return
        yield from _decode(self.video, start, stop)


def open_source(spec: str | os.PathLike, fps: float | None = None) -> Source:
    """A video file, a folder of images (sorted by name) or a glob of images."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise UserError(f"{text!r}: the folder holds no frames ({', '.join(IMAGE_SUFFIXES)})")
        return Source(text, Fraction(fps) if fps else DEFAULT_FPS, len(files), files=tuple(files))
    if not path.exists() and glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{text!r}: the pattern matches no image files")
        return Source(text, Fraction(fps) if fps else DEFAULT_FPS, len(files), files=tuple(files))
    if not path.exists():
        raise UserError(f"{text!r}: no such file or folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"{text!r} is one image; give a video file, a folder of frames or a glob")
    av = _av()
    try:
        with av.open(text) as container:
            if not container.streams.video:
                raise UserError(f"{text!r}: the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            count = int(stream.frames) or None
            has_audio = bool(container.streams.audio)
    except UserError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"{text!r}: cannot read the video ({_why(e)})") from None
    if fps:
        rate = Fraction(fps)
    if not rate:
        raise UserError(f"{text!r}: the video does not give its frame rate; pass --fps")
    return Source(text, Fraction(rate).limit_denominator(1001 * 1000), count, video=path, has_audio=has_audio)


def _decode(path: Path, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
    av = _av()
    i = -1
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                i += 1
                if i < start:
                    continue
                if stop is not None and i >= stop:
                    return
                yield i, frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise UserError(f"{str(path)!r}: the video is damaged after frame {i} ({_why(e)})") from None


def count_frames(source: Source) -> int:
    """Frames in the clip: the container's count, or decoded (packets only) when it has none."""
    if source.count is not None:
        return source.count
    av = _av()
    n = 0
    try:
        with av.open(str(source.video)) as container:
            for packet in container.demux(container.streams.video[0]):
                n += packet.size > 0
    except (av.FFmpegError, OSError) as e:
        raise UserError(f"{source.name!r}: cannot read the video ({_why(e)})") from None
    source.count = n
    return n


def check_video_output(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix.lower() not in _ENCODERS:
        raise UserError(f"{str(p)!r}: unknown video type; use one of {', '.join(_ENCODERS)} or a folder")
    if p.is_dir():
        raise UserError(f"{str(p)!r} is a folder; give a video file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{str(p)!r}: cannot write the output ({_why(e)})") from None
    if not os.access(p.parent, os.W_OK):
        raise UserError(f"{str(p)!r}: cannot write the output (folder not writable)")
    return p


class VideoWriter:
    """Encode frames into ``path`` (codec by extension), atomically; audio from ``audio_from``.

    ``audio_range`` = (start, stop) in seconds of the source's audio to keep (a frame range).
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction, *, audio_from: str | os.PathLike | None = None,
                 audio_range: tuple[float, float | None] = (0.0, None)):
        self.path = check_video_output(path)
        self.fps = Fraction(fps)
        self.audio_from = audio_from
        self.audio_range = audio_range
        self.tmp = self.path.with_name(f".{self.path.stem}.{secrets.token_hex(4)}.tmp{self.path.suffix}")
        self._container = None
        self._stream = None
        self._audio = None
        self.frames = 0

    def _open(self, height: int, width: int) -> None:
        av = _av()
        codec, pix = _ENCODERS[self.path.suffix.lower()]
        if pix == "yuv420p" and (height % 2 or width % 2) and codec != "mpeg4":
            pix = "yuv444p"  # 4:2:0 cannot hold an odd side; 4:4:4 keeps the exact size
        self._container = av.open(str(self.tmp), mode="w", format=_FORMATS.get(self.path.suffix.lower()))
        stream = self._container.add_stream(codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": "24", "b": "0", "row-mt": "1"}
        self._stream = stream
        # Streams must all exist before the first packet is muxed (the header is written then).
        self._audio = _AudioCopy.open(self.audio_from, self._container, self.path.suffix.lower(), self.audio_range)

    def write(self, frame: np.ndarray) -> None:
        av = _av()
        frame = imageio.to_uint8(np.asarray(frame))
        if self._container is None:
            self._open(*frame.shape[:2])
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        if self._container is None:
            raise UserError(f"{str(self.path)!r}: no frames to write")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.copy()
            self._container.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        av = _av()
        try:
            if self._audio is not None:
                self._audio.src.close()
            if self._container is not None:
                self._container.close()
        except (av.FFmpegError, OSError, ValueError):
            pass  # the temporary file goes anyway
        try:
            self.tmp.unlink()
        except OSError:
            pass


# Audio codecs each container takes as they are; anything else is re-encoded to the first.
_AUDIO_CODECS = {
    ".mp4": ("aac", "mp3", "alac", "ac3", "opus"), ".mov": ("aac", "mp3", "alac", "ac3", "pcm_s16le"),
    ".mkv": ("aac", "opus", "vorbis", "mp3", "flac", "ac3", "pcm_s16le"), ".webm": ("libopus", "opus", "vorbis"),
    ".avi": ("mp3", "ac3", "pcm_s16le"),
}


class _AudioCopy:
    """The first audio stream of a source, remuxed when the output container takes its codec
    and re-encoded otherwise, cut to a time range (a --frames range) and shifted to 0."""

    def __init__(self, src, stream, out_stream, container, transcode: bool, time_range):
        self.src, self.stream, self.out, self.container = src, stream, out_stream, container
        self.transcode, self.range = transcode, time_range

    @classmethod
    def open(cls, audio_from, container, suffix: str, time_range):
        if audio_from is None or suffix not in _AUDIO_CODECS:
            return None  # GIF has no sound
        av = _av()
        try:
            src = av.open(str(audio_from))
        except (av.FFmpegError, OSError):
            return None
        if not src.streams.audio:
            src.close()
            return None
        a = src.streams.audio[0]
        allowed = _AUDIO_CODECS[suffix]
        if a.codec_context.name in allowed:
            return cls(src, a, container.add_stream_from_template(a), container, False, time_range)
        out = container.add_stream(allowed[0], rate=a.codec_context.sample_rate or 48000)
        return cls(src, a, out, container, True, time_range)

    def copy(self) -> None:
        start, stop = self.range
        a = self.stream
        offset = None
        try:
            for packet in self.src.demux(a):
                if packet.pts is None or packet.dts is None:
                    continue
                t = float(packet.pts * a.time_base)
                if t < start or (stop is not None and t >= stop):
                    continue
                if offset is None:
                    offset = packet.pts
                if not self.transcode:
                    packet.pts -= offset
                    packet.dts -= offset
                    packet.stream = self.out
                    self.container.mux(packet)
                    continue
                for frame in packet.decode():
                    frame.pts = None  # let the encoder number the samples from 0
                    for p in self.out.encode(frame):
                        self.container.mux(p)
            if self.transcode:
                for p in self.out.encode(None):
                    self.container.mux(p)
        finally:
            self.src.close()


_FORMATS = {".mkv": "matroska", ".mov": "mov", ".mp4": "mp4", ".webm": "webm", ".gif": "gif", ".avi": "avi"}


def probe(path: str | os.PathLike) -> tuple[Fraction, int, bool]:
    """(frame rate, decoded frame count, has audio) of a video file; for tests and checks."""
    src = open_source(path)
    n = sum(1 for _ in src.frames())
    return src.fps, n, src.has_audio


__all__ = [
    "VIDEO_SUFFIXES",
    "Source",
    "VideoWriter",
    "check_video_output",
    "count_frames",
    "is_video_file",
    "open_source",
    "probe",
]
