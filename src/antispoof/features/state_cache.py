"""A frozen encoder's hidden states, cached once per data set and encoder, read back memory-mapped.

Training a small head on a frozen encoder costs seconds per epoch once the encoder has run; the
encoder itself is the expensive part, so it runs once (`antispoof embed`) and its states are kept:

    <root>/                          (folds/<dataset>/_embeddings/<encoder>/ by default)
        meta.json                    encoder (name, type, folder, layers), weights and data-set
                                     fingerprints, cached layers, dim, dtype, frame hop
        shard_00000.npy              [frames, layers, dim] float16: the clips of one encoder batch,
                                     one after another on the 20 ms grid
        shard_00000.csv              utt_id, start, frames of those clips; written after its .npy,
                                     so a shard is complete exactly when its .csv exists

A killed embedding run resumes after its last complete shard. A cache whose meta.json names
other weights or another version of the data set is refused, never mixed (and so are augmented
views of another wave chain: meta.json records the chain, `views_wave`); a cache of more
layers serves any subset of them (StateCache(root, layers)).
Disk cost: layers x dim x 2 bytes x 50 frames per second of audio (whisper-base, 6 states of
512: 1.1 GB per hour; all 7 states: 1.29 GB per hour).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.locks import output_lock
from antispoof.schema import ManifestError
from antispoof.utils import atomic_path, write_csv_atomic, write_json_atomic

META = "meta.json"
FRAME_HOP_S = 0.02    # one encoder frame per 20 ms (Whisper, wav2vec 2.0 and its kin alike)
DTYPE = "float16"
# what must agree between a cache and the run that wants to use (or extend) it
IDENTITY = ("encoder", "weights_sha256", "dataset_sha256", "dim", "dtype", "max_seconds", "quantize")


class CacheError(ManifestError):
    """A state cache that is missing, incomplete or made by other weights / another data set."""


def sha256_of(paths: list[Path], chunk: int = 1 << 22) -> str:
    """One fingerprint over the bytes of several files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(data_dir: Path) -> str:
    """The data set's version: its train.csv and test.csv (clip ids, audio paths, durations, labels)."""
    files = [Path(data_dir) / name for name in ("train.csv", "test.csv") if (Path(data_dir) / name).is_file()]
    if not files:
        raise CacheError(f"{data_dir}: no train.csv or test.csv (not a data set folder)")
    return sha256_of(files)


def weights_fingerprint(checkpoint: Path) -> str:
    """The encoder's weights: every weight file of a transformers checkpoint folder."""
    files = sorted(Path(checkpoint).glob("*.safetensors")) or sorted(Path(checkpoint).glob("pytorch_model*.bin"))
    if not files:
        raise CacheError(f"{checkpoint}: no weight files to fingerprint")
    return sha256_of(files)


def default_root(output_root: str | Path, data_dir: str | Path, encoder: str) -> Path:
    """folds/<dataset>/_embeddings/<encoder name>: beside the runs that train on it."""
    path = Path(str(encoder))
    name = (path.parent.name if path.is_file() else path.name) if path.exists() else str(encoder)
    return Path(output_root) / Path(data_dir).name / "_embeddings" / name.replace("/", "_")


class StateCache:
    """Read side: utt_id -> [frames, layers, dim] float16 (from a memory-mapped shard).

    `layers` picks hidden states (encoder indices) out of those cached; None reads them all."""

    def __init__(self, root: str | Path, layers: list[int] | None = None):
        self.root = Path(root)
        meta = self.root / META
        if not meta.is_file():
            raise CacheError(f"{self.root}: no state cache here ({META} missing); run `antispoof embed` first")
        self.meta = json.loads(meta.read_text())
        if float(self.meta.get("hop_s", FRAME_HOP_S)) != FRAME_HOP_S:  # labels are fitted 2 per frame
            raise CacheError(f"{self.root}: frames every {self.meta['hop_s']} s; the heads read {FRAME_HOP_S} s frames")
        self.index = read_index(self.root)
        self._where = dict(zip(self.index.index, zip(self.index.shard, self.index.start, self.index.frames)))
        self._shards: dict[int, np.ndarray] = {}
        cached = list(self.meta["layers"])
        self.layers = cached if layers is None else list(layers)
        if not set(self.layers) <= set(cached):
            raise CacheError(f"{self.root}: layers {self.layers} asked, the cache holds {cached}")
        self._pick = None if self.layers == cached else [cached.index(layer) for layer in self.layers]

    @property
    def n_states(self) -> int:
        return len(self.layers)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def frames(self, utt_id: str) -> int:
        return int(self._where[utt_id][2])

    def missing(self, utt_ids) -> list[str]:
        return [u for u in utt_ids if u not in self._where]

    def require(self, utt_ids, what: str = "clips") -> None:
        """Fail in one line unless every clip is cached."""
        missing = self.missing(utt_ids)
        if missing:
            raise CacheError(f"{self.root}: {len(missing)} {what} are not cached (e.g. {missing[0]}); "
                             "`antispoof embed` completes the cache")

    def states(self, utt_id: str) -> np.ndarray:
        shard, start, frames = self._where[utt_id]
        if shard not in self._shards:
            self._shards[shard] = np.load(self.root / f"shard_{shard:05d}.npy", mmap_mode="r")
        states = self._shards[shard][start: start + frames]
        return states if self._pick is None else states[:, self._pick]


def read_index(root: Path) -> pd.DataFrame:
    """utt_id -> shard, start, frames over every complete shard (one with its .csv)."""
    parts = []
    for csv in sorted(Path(root).glob("shard_*.csv")):
        part = pd.read_csv(csv, dtype={"utt_id": str})
        part["shard"] = int(csv.stem.split("_")[1])
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["shard", "start", "frames"], index=pd.Index([], name="utt_id"))
    return pd.concat(parts).set_index("utt_id")


def open_for_writing(root: Path, meta: dict, force: bool = False) -> tuple[dict, pd.DataFrame]:
    """Create the cache folder with `meta`, or check an existing one matches; -> the meta in force
    and the index so far. An existing cache holding all of meta's layers (or more) is extended
    with its own layers; one of other weights, data or fewer layers is refused in one line;
    `force` clears it."""
    root = Path(root)
    path = root / META
    if path.is_file() and force:
        for stale in [*root.glob("shard_*"), path]:
            stale.unlink()
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in IDENTITY if old.get(k) != meta.get(k)]
        if not set(meta["layers"]) <= set(old["layers"]):
            changed.append("layers")
        if meta.get("views", 1) > 1 and old.get("views_wave") not in (None, meta.get("views_wave")):
            changed.append("views_wave")
        if changed:
            raise CacheError(f"{root}: cache made with other {', '.join(changed)} "
                             f"({changed[0]}: {old.get(changed[0])!r} here, {meta.get(changed[0])!r} now); "
                             "--force rebuilds it")
        if meta.get("views", 1) > 1 and (meta["views"] > old.get("views", 1) or "views_wave" not in old):
            old = {**old, "views": max(meta["views"], old.get("views", 1)), "views_wave": meta.get("views_wave")}
            write_json_atomic(path, old)  # the copies about to be added, and the chain that makes them
        return old, read_index(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, meta)
    return meta, read_index(root)


def write_shard(root: Path, number: int, clips: list[tuple[str, np.ndarray]]) -> None:
    """One shard: the clips' states back to back (.npy), then their index (.csv) as the commit mark."""
    arrays = [np.asarray(states, dtype=DTYPE) for _, states in clips]
    frames = np.array([len(a) for a in arrays])
    with atomic_path(Path(root) / f"shard_{number:05d}.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.concatenate(arrays))
    index = pd.DataFrame({"utt_id": [u for u, _ in clips], "start": np.cumsum(frames) - frames, "frames": frames})
    write_csv_atomic(index, Path(root) / f"shard_{number:05d}.csv", index=False)


def next_shard_number(root: Path) -> int:
    """The first free shard number (a half-written .npy without its .csv is overwritten)."""
    done = [int(p.stem.split("_")[1]) for p in Path(root).glob("shard_*.csv")]
    return max(done) + 1 if done else 0


def part_dir(root: Path, index: int, count: int) -> Path:
    """Where shard `index` of `count` embedding processes writes (inside the cache folder)."""
    if not 0 <= index < count:
        raise CacheError(f"shard {index}/{count}: the index runs from 0 to {count - 1}")
    return Path(root) / "parts" / f"{index}-of-{count}"


def merge_parts(root: Path) -> int:
    """Move every part's complete shards into the cache; -> how many moved. Each shard is hard-linked
    in (its .npy, then its .csv, which commits it) before the part's copy goes, so a crash at any
    step leaves every clip in the cache or in its part, and merging again finishes the move."""
    root = Path(root)
    cached, moved = set(read_index(root).index), 0
    for part in sorted((root / "parts").glob("*-of-*")):
        with output_lock(part, f"shard {part.name} of the state cache"):  # a part still being written is refused
            moved += _move_part(root, part, cached)
    if (root / "parts").is_dir() and not any((root / "parts").iterdir()):
        (root / "parts").rmdir()
    return moved


def _move_part(root: Path, part: Path, cached: set) -> int:
    """One part's shards into the cache (see merge_parts); the part folder goes."""
    moved = 0
    for csv in sorted(part.glob("shard_*.csv")):
        npy = csv.with_suffix(".npy")
        keys = set(pd.read_csv(csv, dtype={"utt_id": str})["utt_id"])
        if not keys <= cached:  # not moved yet (else a crash came after the link: just drop the part's copy)
            target = root / f"shard_{next_shard_number(root):05d}"
            target.with_suffix(".npy").unlink(missing_ok=True)  # a half-written one without its .csv
            os.link(npy, target.with_suffix(".npy"))
            os.link(csv, target.with_suffix(".csv"))
            cached |= keys
            moved += 1
        csv.unlink()
        npy.unlink(missing_ok=True)
    for leftover in part.iterdir():  # its meta.json, a .npy its killed process left without a .csv
        leftover.unlink()
    part.rmdir()
    return moved
