"""The folder evaluator (:mod:`nnunet_losses.evaluation`) with nnU-Net's image reader for the file ending, as
nnU-Net's ``compute_metrics_on_folder`` is called with its ``image_reader_writer``: any format nnU-Net reads,
spacing, origin and direction from the headers. ``nnunet-losses evaluate`` runs this.

Each file is read once. The reader of an ending is the first of nnU-Net's readers for it that reads a file, kept for
the following files of that ending (nnU-Net chooses the same way on an example file, which reads that file once
more). Two things nnU-Net's readers drop are kept here: the origin and direction (compared between prediction and
reference), and non-finite voxels of NIfTI read by SimpleITK, which ITK turns into 0: a ``.nii.gz`` file whose header
says float is read by nibabel instead (the array nnU-Net's reader gives, float32, NaN and inf kept; spacing, origin
and direction from ITK's reading of the header, as for every other ``.nii.gz``). A ``.nii.gz`` file whose
compressed data ends before the voxels its header announces (which ITK reads without a complaint, the missing voxels
0) and a file no reader can read are a one-line InvalidInput (a ValueError) naming the file.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import zlib
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from .. import evaluation as _evaluation
from ..errors import InvalidInput
from ..evaluation import KNOWN_ENDINGS, parse_class_arguments, parse_tolerances, validation_cases
from ..metrics.evaluate import Header

__all__ = ["read_segmentation", "evaluate_folder", "parse_class_arguments", "parse_tolerances", "validation_cases"]

ITK_NIFTI = ".nii.gz"  # NIfTI that nnU-Net reads with SimpleITK (.nii: nibabel, which keeps NaN)
_READERS: Dict[str, type] = {}  # file ending -> the nnU-Net reader class that read a file of it (per process)


@contextmanager
def _native_stderr(captured: List[str]) -> Iterator[None]:
    """What C and C++ libraries (ITK's MetaIO, niftilib) print to the process's stderr during the block, appended
    to ``captured`` instead of printed."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


_ITK_PREFIX = re.compile(r"^(?:sitk::|itk::|ITK )ERROR:\s*(?:\w+\(0x[0-9a-fA-F]+\):\s*)?")


def _reason(err: BaseException, path: str) -> str:
    """The informative line of an exception's message (ITK's come with a source location first and may end with an
    unrelated errno), shortened."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Exception thrown in SimpleITK", "Reason:", "- "))]
    text = _ITK_PREFIX.sub("", lines[-1]) if lines else type(err).__name__
    return text.replace(path, os.path.basename(path))[:200]


def _unreadable(path: str, ending: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{path}: cannot read this {ending} file (truncated or not an image?): {reason}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _header_from_props(props: dict) -> Optional[Header]:
    """Origin and direction (ITK's convention, LPS) from what nnU-Net's reader returns; None where it has none."""
    if "sitk_stuff" in props:
        stuff = props["sitk_stuff"]
        return Header(tuple(float(v) for v in stuff["origin"]), tuple(float(v) for v in stuff["direction"]))
    if "nibabel_stuff" in props:  # a RAS affine over (x, y, z); the array nnU-Net returns is (z, y, x)
        stuff = props["nibabel_stuff"]
        affine = np.asarray(stuff.get("reoriented_affine", stuff["original_affine"]), dtype=np.float64)
        zooms = np.linalg.norm(affine[:3, :3], axis=0)
        flip = np.array([-1.0, -1.0, 1.0])  # RAS -> LPS
        direction = affine[:3, :3] / np.where(zooms > 0, zooms, 1.0) * flip[:, None]
        return Header(tuple(float(v) for v in affine[:3, 3] * flip), tuple(float(v) for v in direction.ravel()))
    return None


def _read_with_nnunet(path: str, ending: str) -> Tuple[np.ndarray, Tuple[float, ...], Optional[Header]]:
    from nnunetv2.imageio.reader_writer_registry import LIST_OF_IO_CLASSES

    chosen = _READERS.get(ending)
    candidates = [chosen] if chosen else [rw for rw in LIST_OF_IO_CLASSES
                                          if ending.lower() in rw.supported_file_endings]
    if not candidates:
        raise InvalidInput(f"{path}: nnU-Net has no reader for {ending} files")
    reasons = []
    for reader in candidates:
        try:
            seg, props = reader().read_seg(path)
        except Exception as err:  # any reader's failure on a damaged file: reported in one line below
            reasons.append(_reason(err, path))
            continue
        _READERS.setdefault(ending, reader)
        return seg[0], tuple(float(s) for s in props["spacing"]), _header_from_props(props)
    raise _unreadable(path, ending, reasons[0])


def _itk_header(path: str):
    """SimpleITK's reader of ``path`` with the header read (no voxels), or None when ITK cannot read it."""
    import SimpleITK as sitk

    info = sitk.ImageFileReader()
    info.SetFileName(path)
    try:
        info.ReadImageInformation()
    except RuntimeError:
        return None
    return info


def _nifti_bytes(info) -> Optional[int]:
    """Bytes of a NIfTI file's header and voxels, uncompressed (ITK's reading of the header); None if unknown."""
    try:
        ndim = int(info.GetMetaData("dim[0]"))
        voxels = int(np.prod([int(info.GetMetaData(f"dim[{i}]")) for i in range(1, ndim + 1)]))
        return int(float(info.GetMetaData("vox_offset"))) + voxels * int(info.GetMetaData("bitpix")) // 8
    except (RuntimeError, ValueError):
        return None


def _gzip_short_of(path: str, expected: int) -> Optional[int]:
    """How many bytes a gzip file decompresses to when fewer than ``expected`` (truncated), else None. Cheap for a
    complete file: its last 4 bytes hold its size; only when they do not (a truncated file, or one of several
    gzip members) is the file decompressed to count."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 4:
            f.seek(-4, os.SEEK_END)
            if int.from_bytes(f.read(4), "little") == expected % (1 << 32):
                return None
    count, stream = 0, zlib.decompressobj(31)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                count += len(stream.decompress(chunk))
                while stream.eof and stream.unused_data:  # the next gzip member
                    rest, stream = stream.unused_data, zlib.decompressobj(31)
                    count += len(stream.decompress(rest))
    except zlib.error:  # corrupt data: what came before it counts
        pass
    return count if count < expected else None


def _read_float_nifti(path: str, info) -> Optional[Tuple[np.ndarray, Tuple[float, ...], Header]]:
    """A float NIfTI file as nnU-Net's SimpleITK reader returns it, but with its non-finite voxels (nibabel's
    voxels, ITK's header); None where the layout is not one nnU-Net's reader knows."""
    import nibabel

    try:
        voxels = np.asanyarray(nibabel.load(path).dataobj)  # scaled as ITK scales; NaN and inf kept
    except Exception as err:
        raise _unreadable(path, ITK_NIFTI, _reason(err, path)) from None
    size = tuple(info.GetSize())
    if voxels.size != int(np.prod(size)) or not 2 <= len(size) <= 4:
        return None
    array = voxels.T.reshape(size[::-1]).astype(np.float32, copy=False)  # (x, y, z) on disk -> ITK's (z, y, x)
    spacing = list(info.GetSpacing())
    if array.ndim == 2:  # nnU-Net: a 2D image is one slice, its spacing 999 x the largest in front
        array, spacing = array[None], [max(spacing) * 999, *spacing[::-1]]
    elif array.ndim == 3:
        spacing = spacing[::-1]
    else:  # 4D: the first channel
        array, spacing = array[0], spacing[::-1][1:]
    return (array, tuple(abs(float(s)) for s in spacing),
            Header(tuple(float(v) for v in info.GetOrigin()), tuple(float(v) for v in info.GetDirection())))


def read_segmentation(path: str) -> Tuple[np.ndarray, Tuple[float, ...], Optional[Header]]:
    """(labels, spacing, header) of a segmentation file, read once by nnU-Net's reader for its ending (a float
    ``.nii.gz``: by nibabel, so that NaN and inf stay); header: origin and direction, None for formats without one.
    A file that cannot be read: one-line InvalidInput naming it (what the image libraries print meanwhile is part of
    it, not printed)."""
    ending = next((e for e in KNOWN_ENDINGS if path.endswith(e)), os.path.splitext(path)[1])
    native: List[str] = []
    try:
        with _native_stderr(native):
            read = _read(path, ending)
    except InvalidInput as err:
        printed = _first_line("".join(native))
        raise InvalidInput(f"{err}{f' ({printed})' if printed else ''}") from None
    if "".join(native).strip():  # a file read with warnings: shown as the libraries printed them
        sys.stderr.write("".join(native))
    return read


def _read(path: str, ending: str) -> Tuple[np.ndarray, Tuple[float, ...], Optional[Header]]:
    if ending == ITK_NIFTI:
        import SimpleITK as sitk

        info = _itk_header(path)
        expected = None if info is None else _nifti_bytes(info)
        got = None if expected is None else _gzip_short_of(path, expected)
        if got is not None:  # ITK would read it, the missing voxels as 0
            raise _unreadable(path, ending, f"the data ends after {got} of the {expected} bytes its header "
                                            "announces")
        if info is not None and info.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
            read = _read_float_nifti(path, info)
            if read is not None:
                return read
    return _read_with_nnunet(path, ending)


def evaluate_folder(pred_dir: str, ref_dir: str, *args, **kwargs) -> dict:
    """:func:`nnunet_losses.evaluation.evaluate_folder` (same arguments) reading with nnU-Net's readers."""
    kwargs.setdefault("reader", read_segmentation)
    return _evaluation.evaluate_folder(pred_dir, ref_dir, *args, **kwargs)
