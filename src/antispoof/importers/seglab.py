"""PartialSpoof segment labels from whichever resolutions a copy of the database holds.

PartialSpoof v1.2 ships `segment_labels/{subset}_seglab_{shift}.npy` for shifts 0.01 to 0.64 s,
but the 0.01 file is missing from some copies (and some mirrors carry only the coarse ones). The
project stores segment labels at 10 ms, so the finest file present is used and, when it is coarser,
each window's label is repeated over its 10 ms frames. PartialSpoof made a window spoofed when any of
it is spoofed, so min-pooling the derived labels back to that shift gives the file's labels exactly;
the regions are only as precise as that shift, which is why the data card names it.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from antispoof.data.manifest import n_segments
from antispoof.schema import SEGMENT_HOP_S, ManifestError, fail

SHIFTS = ("0.01", "0.02", "0.04", "0.08", "0.16", "0.32", "0.64")  # seconds, as the file names spell them


def finest_seglab(folder: Path, subset: str) -> tuple[Path, str]:
    """The finest segment label file of a subset that exists, and its shift (as in its name)."""
    for shift in SHIFTS:
        path = Path(folder) / f"{subset}_seglab_{shift}.npy"
        if path.is_file():
            return path, shift
    fail(Path(folder) / f"{subset}_seglab_{SHIFTS[0]}.npy",
         f"segment label file not found, nor a coarser one ({subset}_seglab_{SHIFTS[1]} ... {SHIFTS[-1]}.npy)")


def labels_at_10ms(segments: dict[str, np.ndarray], shift: str, durations: dict[str, float]) -> dict[str, np.ndarray]:
    """Labels at `shift` -> 10 ms labels. 10 ms labels are kept as they are (consumers truncate
    a frame of difference); coarser ones are repeated and cut at the clip's own frame count, as a
    window past the end would otherwise leave frames that no audio, and no regions file, covers.
    A cut that would drop the only spoofed frames (a label file longer than its clip) is not made."""
    factor = int(round(float(shift) / SEGMENT_HOP_S))
    if factor == 1:
        return segments
    out = {}
    for utt_id, labels in segments.items():
        fine = np.repeat(labels, factor)
        cut = fine[: n_segments(durations[utt_id])]
        out[utt_id] = cut if cut.size and cut.min() == fine.min() else fine
    return out


def resolution_note(shifts: dict[str, str]) -> str:
    """The data card's sentence on where the 10 ms labels came from, per subset."""
    derived = {subset: shift for subset, shift in shifts.items() if shift != SHIFTS[0]}
    if not derived:
        return "Segment labels from the 0.01 s files."
    which = ", ".join(f"{subset} from the {shift} s file" for subset, shift in derived.items())
    return (f"10 ms segment labels DERIVED ({which}: the finest resolution present), each window's label "
            "repeated over its 10 ms frames; spoofed regions are only as precise as that resolution, and "
            "min-pooling back to it gives the original labels.")


def seglab_array(value, seglab_path: Path, utt_id: str) -> np.ndarray:
    """PartialSpoof stores '0'/'1' strings (sometimes ints); return int8, 1 = bona fide."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0:
        raise ManifestError(f"{seglab_path}: segment labels of '{utt_id}' are empty")
    if arr.dtype.kind in "USO":
        text = np.char.strip(arr.astype(str))
        if not np.isin(text, ("0", "1")).all():
            bad = text[~np.isin(text, ("0", "1"))][0]
            raise ManifestError(f"{seglab_path}: segment labels of '{utt_id}' contain '{bad}' (expected 0/1)")
        return (text == "1").astype(np.int8)
    if not np.isin(arr, (0, 1)).all():
        raise ManifestError(f"{seglab_path}: segment labels of '{utt_id}' are not 0/1")
    return arr.astype(np.int8)


def load_seglab(path: Path) -> dict:
    """A PartialSpoof label file: a pickled dict utt_id -> labels (numpy's allow_pickle format)."""
    if not path.is_file():
        raise ManifestError(f"{path}: segment label file not found")
    try:
        data = np.load(path, allow_pickle=True)
        return dict(data.item())
    except (OSError, ValueError, TypeError, AttributeError, EOFError, pickle.UnpicklingError) as err:
        raise ManifestError(f"{path}: not a pickled dict utt_id -> labels ({str(err).splitlines()[0]})") from None
