"""Frame sources behind one ``--source`` string: camera, video file, network stream, image folder/glob, synthetic.

``open_source`` picks the source; the classes live in ``source`` (the interface), ``capture``
(OpenCV cameras, files, streams), ``folder`` (images) and ``synthetic``, and are re-exported here.
"""
from __future__ import annotations

import glob as globlib
import os
import pathlib
import urllib.parse

from ..errors import SourceError
from ..images import IMAGE_SUFFIXES
from .capture import CameraSource, StreamSource, VideoFileSource
from .folder import ImageFolderSource
from .source import DEFAULT_SOURCE_OPTIONS, MAX_CONSECUTIVE_CORRUPT, Frame, Source, SourceOptions
from .synthetic import SyntheticSource, decode_frame_number, encode_frame_number, parse_synthetic

__all__ = [
    "MAX_CONSECUTIVE_CORRUPT", "SOURCE_FORMS", "STREAM_SCHEMES", "SYNTHETIC_SCHEME", "CameraSource", "Frame",
    "ImageFolderSource", "Source", "SourceOptions", "StreamSource", "SyntheticSource", "VideoFileSource",
    "decode_frame_number", "encode_frame_number", "open_source", "parse_synthetic",
]

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
SYNTHETIC_SCHEME = "synthetic"
SOURCE_FORMS = ("camera index (0) or V4L2 device path (/dev/video0)", "video file (clip.mp4)",
                "stream URL (rtsp://..., http://...)", "image folder or glob (imgs/*.jpg)",
                "synthetic://WIDTHxHEIGHT@FPS[?frames=N&dup=K]")


def open_source(spec: str | int | os.PathLike, options: SourceOptions = DEFAULT_SOURCE_OPTIONS) -> Source:
    """Build (not yet open) the Source a --source string names; errors list the accepted forms."""
    if isinstance(spec, int):
        return CameraSource(spec, options)
    text = str(spec)
    if text.isdigit():
        return CameraSource(int(text), options)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme == SYNTHETIC_SCHEME:
        return parse_synthetic(text)
    if scheme in STREAM_SCHEMES:
        return StreamSource(text, options)
    if text.startswith("/dev/video") or text.startswith("/dev/v4l/"):
        return CameraSource(text, options)
    path = pathlib.Path(text)
    if path.is_dir():
        return ImageFolderSource(path, options)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource(text, options)
        return VideoFileSource(path, options)
    if globlib.has_magic(text):
        return ImageFolderSource(text, options)
    raise SourceError(f"cannot open source {text!r}: it is not an existing file or folder, a glob, a camera "
                      f"or a URL; accepted forms: {'; '.join(SOURCE_FORMS)}")

