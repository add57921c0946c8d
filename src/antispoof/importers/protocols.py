"""Importers for corpora published with space-separated ASVspoof-style protocols: PartialSpoof
(segment labels from its seglab files) and ASVspoof 2019 LA (constant segment labels).
train + dev become train.csv (`subset` keeps the official split), eval the hidden test."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from antispoof.importers.common import (ProtocolRow, constant_labels, find_root, protocol_frame, read_protocol,
                                        write_protocol_corpus)
from antispoof.importers.seglab import finest_seglab, labels_at_10ms, load_seglab, resolution_note, seglab_array
from antispoof.schema import ManifestError


# ---- PartialSpoof ------------------------------------------------------------------

PS_PROTOCOL = "protocols/PartialSpoof_LA_cm_protocols/PartialSpoof.LA.cm.{subset}.trl.txt"


def _partialspoof_segments(rows: list[ProtocolRow], seglab: dict, seglab_path: Path) -> dict[str, np.ndarray]:
    """Segment labels of each protocol row, checked against the utterance label."""
    segments = {}
    for row in rows:
        if row.utt_id not in seglab:
            raise ManifestError(f"{seglab_path}: no segment labels for '{row.utt_id}' ({row.where})")
        seg = seglab_array(seglab[row.utt_id], seglab_path, row.utt_id)
        if (seg.min() == 0) != (row.label == "spoof"):
            raise ManifestError(
                f"{seglab_path}: segment labels of '{row.utt_id}' contradict its label '{row.label}' ({row.where})")
        segments[row.utt_id] = seg
    return segments


def import_partialspoof(root: str | Path, out: str | Path, workers: int = 8, force: bool = False) -> Path:
    """Import the PartialSpoof database: train+dev -> train.csv, eval -> test/solution.

    `root` is the `database/` folder (or its parent). Segment labels come from the finest
    `segment_labels/{subset}_seglab_{0.01,...,0.64}.npy` present (importers/seglab.py); 10 ms ones are
    stored as-is: they may differ from the audio length by a frame, which consumers resolve by
    truncating (as PartialSpoof does).
    """
    root = find_root(Path(root), "protocols", ["database"])
    seen: dict[str, str] = {}
    frames, segments, shifts = {}, {}, {}
    for subset in ("train", "dev", "eval"):
        rows = read_protocol(root / PS_PROTOCOL.format(subset=subset), subset, seen)
        seglab_path, shifts[subset] = finest_seglab(root / "segment_labels", subset)
        coarse = _partialspoof_segments(rows, load_seglab(seglab_path), seglab_path)
        frames[subset] = protocol_frame(
            rows, lambda r: root / r.subset / "con_wav" / f"{r.utt_id}.wav", "partialspoof", workers)
        segments[subset] = labels_at_10ms(coarse, shifts[subset], dict(zip(frames[subset].utt_id,
                                                                           frames[subset].duration)))
    notes = ("PartialSpoof (Zhang et al.): utterances concatenating bona fide and spoofed "
             "(ASVspoof 2019 LA) segments. Segment labels at 10 ms, 1 = bona fide, 0 = spoof. "
             f"{resolution_note(shifts)} `subset` keeps the official train/dev split; group = speaker.")
    return write_protocol_corpus(out, "PartialSpoof", root, frames, segments, notes, force)


# ---- ASVspoof 2019 LA ----------------------------------------------------------------

ASV19_PROTOCOLS = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


def import_asvspoof2019_la(root: str | Path, out: str | Path, workers: int = 8, force: bool = False) -> Path:
    """Import ASVspoof 2019 LA: train+dev -> train.csv, eval -> test/solution.

    `root` is the `LA/` folder (or its parent). Utterances are wholly bona fide or wholly
    spoofed, so segment labels are constant.
    """
    root = find_root(Path(root), "ASVspoof2019_LA_cm_protocols", ["LA"])
    seen: dict[str, str] = {}
    frames = {}
    for subset, name in ASV19_PROTOCOLS.items():
        protocol = root / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{name}.txt"
        rows = read_protocol(protocol, subset, seen)
        frames[subset] = protocol_frame(
            rows, lambda r: root / f"ASVspoof2019_LA_{r.subset}" / "flac" / f"{r.utt_id}.flac",
            "asvspoof2019_la", workers)
    notes = ("ASVspoof 2019 logical access: bona fide VCTK speech and TTS/VC spoofs "
             "(attacks A01-A19; eval attacks differ from train/dev). `subset` keeps the official "
             "train/dev split; group = speaker; segment labels are constant per utterance.")
    segments = {subset: constant_labels(frame) for subset, frame in frames.items()}
    return write_protocol_corpus(out, "ASVspoof 2019 LA", root, frames, segments, notes, force)
