"""PartialSpoof segment labels from whichever resolutions a copy of the database holds.

PartialSpoof v1.2 ships `segment_labels/{subset}_seglab_{shift}.npy` for shifts 0.01 to 0.64 s,
but the 0.01 file is missing from some copies (and some mirrors carry only the coarse ones). The
project stores segment labels at 10 ms, so the finest file present is used and, when it is coarser,
each window's label is repeated over its 10 ms frames. PartialSpoof made a window spoofed when any of
it is spoofed, so min-pooling the derived labels back to that shift gives the file's labels exactly;
the regions are only as precise as that shift, which is why the data card names it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from antispoof.data.manifest import n_segments
from antispoof.schema import SEGMENT_HOP_S, fail

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
