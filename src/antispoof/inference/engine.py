"""New audio through an experiment's fold models: the model side of `antispoof predict`.

Any file read_audio reads (soundfile or FFmpeg: any sample rate, any channel count) is resampled
to 16 kHz and mixed down, as every clip of a data set was. A file no longer than the window is
one window, scored whole by every fold model exactly as the fold runner scored the test split
(predict.predict_table over the fold's own detector, weights and input), so its fold-averaged
score is the test table's. A longer file is cut into windows of the model's clip length (Whisper:
the encoder's 15 s; SELCNN-MTL, trained and tested on whole clips: the longest clip of its data
set) overlapping by
`overlap`; each window is scored as a clip of its own, and its segment scores are placed on the
file's time grid (`stitch`). Window starts are whole multiples of the coarsest segment hop of the
models involved, so every model's segments of every window fall on one grid.

Heads on a frozen encoder (input_key "states": Whisper or a local wav2vec 2.0 / HuBERT / WavLM /
data2vec-audio folder, models.encoders) were trained and tested on cached hidden states;
here the states are computed live by the same code that fills the cache (embed.frozen_encoder,
embed.encode_clips: the same encoder, layers, 15 s chunks with padding masked, fp16 rounding), once
per window for every experiment sharing that encoder. Batches differ from the cache's, so a rare
state rounds to the neighbouring fp16 value: scores agree to about 1e-5, not bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from antispoof.config import ConfigError
from antispoof.data.audio import SR, AudioError, read_audio
from antispoof.data.dataset import collate
from antispoof.models.factory import build_model
from antispoof.inference.tables import predict_table
from antispoof.runs import finished_folds
from antispoof.schema import SEGMENT_HOP_S, fail
from antispoof.models.checkpoints import check_matches, model_state

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".g722", ".aif", ".aiff",
                  ".au", ".snd", ".caf", ".w64", ".webm", ".wma"}
LIST_SUFFIXES = {".txt", ".lst", ".list", ".scp"}
DEFAULT_WINDOW_S = 15.0  # when neither the model nor its data set says otherwise
GROUP_SECONDS = 300.0    # window audio scored at once (batches are cut inside a group)


# ---- which files --------------------------------------------------------------------------------

def _list_file(path: Path) -> list[tuple[Path, str]]:
    """A text list: one path per line (relative ones from the list's folder), # comments."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            item = Path(line) if Path(line).is_absolute() else path.parent / line
            rows.append((item, Path(line).stem))
    return rows


def list_audio(sources) -> pd.DataFrame:
    """FILE | DIR | LIST arguments -> utt_id, path of every file to score, in order.

    A folder is searched recursively for audio suffixes (a corrupt file with one is listed, and
    then reported by the audio check); utt_id is the path under the folder without its suffix,
    a file's or a listed one's its name without the suffix (the suffix kept where names collide).
    A listed path that does not exist stays in the table, so it is reported, not dropped."""
    rows: list[tuple[Path, str]] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                fail(source, f"no audio files in it (suffixes {', '.join(sorted(AUDIO_SUFFIXES))})")
            rows += [(p, p.relative_to(source).with_suffix("").as_posix()) for p in found]
        elif source.suffix.lower() in LIST_SUFFIXES and source.is_file():
            rows += _list_file(source)
        else:
            rows.append((source, source.stem))
    table = pd.DataFrame(rows, columns=["path", "utt_id"]).astype(str)
    table = table.drop_duplicates("path").reset_index(drop=True)
    dup = table["utt_id"].duplicated(keep=False)  # a.wav beside a.flac: keep the suffix to tell them apart
    table.loc[dup, "utt_id"] = [Path(p).name for p in table.loc[dup, "path"]]
    again = table["utt_id"].duplicated(keep=False)
    table.loc[again, "utt_id"] = [f"{u}#{i}" for i, u in zip(table.index[again], table.loc[again, "utt_id"])]
    return table


# ---- windows and the time grid ----------------------------------------------------------------------

def grid_seconds(hops) -> float:
    """The coarsest grid every hop divides (10 ms units): where windows may start."""
    units = [int(round(h / SEGMENT_HOP_S)) for h in hops]
    return math.lcm(*units) * SEGMENT_HOP_S


@dataclass(frozen=True)
class WindowPlan:
    """Windows of `window_s` seconds, `overlap` of them shared with the next, starting on the grid."""

    window_s: float
    overlap: float = 0.5
    grid_s: float = 0.16

    def __post_init__(self):
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), not {self.overlap}")
        if self.window_s < self.grid_s:
            raise ConfigError(f"window {self.window_s} s is shorter than the {self.grid_s} s grid")

    def starts(self, n_samples: int) -> list[int]:
        """Start samples: [0] for a file no longer than a window; else every stride, then one
        last window ending at the file's end (its start rounded up onto the grid, so it is at
        most a window long)."""
        window, grid = int(round(self.window_s * SR)), int(round(self.grid_s * SR))
        if n_samples <= window:
            return [0]
        stride = max(grid, int(self.window_s * (1 - self.overlap) * SR) // grid * grid)
        starts = list(range(0, n_samples - window, stride))
        last = -(-(n_samples - window) // grid) * grid
        return starts + [last] if last > starts[-1] else starts

    def length(self, n_samples: int, start: int) -> int:
        return min(int(round(self.window_s * SR)), n_samples - start)


def stitch(pieces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Segment scores of overlapping windows on one grid: (first grid index, scores) pieces,
    averaged where they overlap; a grid cell no window reached (windows without overlap leave
    the odd one at their seam) takes its left neighbour's value."""
    size = max(offset + len(a) for offset, a in pieces)
    total, count = np.zeros(size), np.zeros(size)
    for offset, a in pieces:
        total[offset: offset + len(a)] += np.asarray(a, dtype=np.float64)
        count[offset: offset + len(a)] += 1
    out = np.full(size, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    seen = np.flatnonzero(count > 0)
    if len(seen) < size and len(seen):
        out = out[seen[np.maximum(np.searchsorted(seen, np.arange(size), side="right") - 1, 0)]]
    return out.astype(np.float32)


# ---- an experiment's fold models ------------------------------------------------------------------

def _precision(setting: str, device: torch.device) -> str:
    """The fold runner's rule: `auto` is bf16 / fp16 autocast on a GPU, float32 on the CPU."""
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _encoder_spec(cfg: DictConfig) -> tuple[str, tuple[int, ...], float, str]:
    """(encoder, hidden-state indices, chunk seconds, quantisation) a frozen head was trained on: the
    layers its cache served it (embed.chosen_layers of `embed.layers`, checked against the head's size)."""
    from antispoof.inference.states import chosen_layers
    from antispoof.models.encoders import encoder_info

    e = cfg.embed
    layers = e.get("layers")
    layers = OmegaConf.to_container(layers) if OmegaConf.is_config(layers) else layers
    chosen = chosen_layers(str(layers) if isinstance(layers, int) else layers, encoder_info(e.encoder).n_states)
    if len(chosen) != int(cfg.model.n_states):
        raise ConfigError(f"{cfg.experiment}: the head reads {cfg.model.n_states} states, embed.layers gives "
                         f"{len(chosen)}; set embed.layers in its config.yaml to the cache's layers")
    return str(e.encoder), tuple(chosen), float(e.max_seconds), str(e.get("quantize", "none"))


@dataclass
class FoldModels:
    """Every fold model of one experiment (best checkpoint, else last, as the fold runner scored)."""

    name: str
    exp_dir: Path
    cfg: DictConfig                      # the first fold's resolved config.yaml
    models: dict[int, torch.nn.Module]
    hop: float
    input_key: str
    encoder: tuple | None = None         # frozen heads: (encoder, layers, max_seconds)
    precision: dict[int, str] = field(default_factory=dict)

    @property
    def folds(self) -> list[int]:
        return list(self.models)

    @classmethod
    def load(cls, exp_dir, folds=None, device: torch.device = torch.device("cpu")) -> "FoldModels":
        exp_dir = Path(exp_dir)
        found = finished_folds(exp_dir)
        if not found:
            fail(exp_dir, "no finished folds (a fold is finished once its metrics.json is written)")
        if folds is not None:
            missing = [k for k in folds if k not in found]
            if missing:
                fail(exp_dir, f"fold {missing[0]} is not finished here (the ensemble was fitted on folds {list(folds)})")
            found = {k: found[k] for k in folds}
        models, precision, cfg = {}, {}, None
        for k, fold in found.items():
            fold_cfg = OmegaConf.load(fold / "config.yaml")
            cfg = cfg or fold_cfg
            model = build_model(fold_cfg.model)
            best = fold / "checkpoints" / "best.ckpt"
            path = best if best.exists() else fold / "checkpoints" / "last.ckpt"
            fix = f"retrain it: antispoof train --model {exp_dir.name} --fold {k} --force"
            state = model_state(path, fix)
            check_matches(path, state, model, fix)
            model.load_state_dict(state)
            models[k] = model.eval().to(device)
            precision[k] = _precision(str(fold_cfg.trainer.precision), device)
        first = next(iter(models.values()))
        encoder = _encoder_spec(cfg) if first.input_key == "states" else None
        return cls(exp_dir.name, exp_dir, cfg, models, float(first.segment_hop_s), first.input_key, encoder, precision)

    def default_window_s(self) -> float:
        """The model's clip length: Whisper's chunk (the encoder's or the frozen cache's), else the
        longest clip its data set has (train.csv and test.csv): SELCNN-MTL trains on whole clips
        (or random crops of them) and the fold runner scored every test clip whole, so each of
        them is one window here too."""
        cfg = self.cfg
        if cfg.get("embed") is not None:
            return float(cfg.embed.max_seconds)
        if cfg.model.get("max_seconds") is not None:
            return float(cfg.model.max_seconds)
        tables = [Path(cfg.data.dir) / f"{split}.csv" for split in ("train", "test")]
        longest = [float(pd.read_csv(t, usecols=["duration"])["duration"].max()) for t in tables if t.is_file()]
        return max(longest) if longest else DEFAULT_WINDOW_S


# ---- scoring ------------------------------------------------------------------------------------------

def _batches(seconds, batch_size: int, max_batch_s: float | None) -> list[list[int]]:
    """Indices sorted by length, cut at batch_size clips or max_batch_s padded seconds (as the
    fold runner's test loader cuts them; masked models give a clip the same scores in any batch)."""
    batches, current = [], []
    for i in np.argsort(seconds, kind="stable"):
        too_long = max_batch_s and current and seconds[i] * (len(current) + 1) > max_batch_s
        if len(current) == batch_size or too_long:
            batches.append(current)
            current = []
        current.append(int(i))
    return batches + [current] if current else batches


def _item(utt_id: str, key: str, values: np.ndarray) -> dict:
    return {"utt_id": utt_id, key: torch.from_numpy(np.ascontiguousarray(values)), "label": -1,
            "seg": torch.zeros(0, dtype=torch.long)}


class Scorer:
    """Scores windows with the fold models of several experiments; each frozen encoder runs once
    per window for every experiment that reads it."""

    def __init__(self, experiments: list[FoldModels], device: torch.device):
        from antispoof.inference.states import frozen_encoder

        self.experiments, self.device = experiments, device
        self.encoders = {}
        for exp in experiments:
            if exp.encoder is not None and exp.encoder not in self.encoders:
                name, _, max_seconds, quantize = exp.encoder
                if quantize == "int8" and device.type != "cpu":  # int8 kernels are the CPU's; fp32 is near
                    quantize = "none"
                self.encoders[exp.encoder] = frozen_encoder(name, max_seconds, quantize=quantize).to(device)

    def _states(self, waves: list[np.ndarray], spec) -> list[np.ndarray]:
        from antispoof.inference.states import encode_clips, length_batches

        batch_seconds = float(next(e.cfg.embed.batch_seconds for e in self.experiments if e.encoder == spec))
        states: list[np.ndarray | None] = [None] * len(waves)
        for batch in length_batches(np.array([len(w) / SR for w in waves]), batch_seconds):
            for i, s in zip(batch, encode_clips(self.encoders[spec], [waves[i] for i in batch], list(spec[1]),
                                                self.device)):
                states[i] = s
        return states

    def score(self, ids: list[str], waves: list[np.ndarray]) -> dict[str, dict[int, pd.DataFrame]]:
        """experiment -> fold -> prediction table (predict.predict_table rows) of these windows."""
        inputs = {spec: self._states(waves, spec) for spec in self.encoders}
        out = {}
        for exp in self.experiments:
            values = inputs[exp.encoder] if exp.encoder is not None else waves
            key = exp.input_key
            seconds = np.array([len(v) for v in values]) * (exp.hop if key == "states" else 1 / SR)
            d = exp.cfg.data
            batches = [collate([_item(ids[i], key, values[i]) for i in b], key=key,
                               dtype=torch.float16 if key == "states" else torch.float32)
                       for b in _batches(seconds, int(d.batch_size), d.get("max_batch_s"))]
            out[exp.name] = {k: predict_table(model, batches, self.device, exp.precision[k])
                             for k, model in exp.models.items()}
        return out


@dataclass
class Scored:
    """What scoring a list of files gives: per file, per window, and every fold model's window tables."""

    files: pd.DataFrame                          # utt_id, path, n_samples, duration, windows, problem
    windows: pd.DataFrame                        # window_id, utt_id, start, n_samples, duration
    tables: dict[str, dict[int, pd.DataFrame]]   # experiment -> fold -> table keyed by window_id


def _window_id(utt_id: str, k: int, n: int) -> str:
    return utt_id if n == 1 else f"{utt_id}@{k}"


def score_files(files: pd.DataFrame, scorer: Scorer, plan: WindowPlan, durations=None, progress: bool = True) -> Scored:
    """Read, window and score every file of `files` (utt_id, path); windows are scored in groups
    of about GROUP_SECONDS of audio (a long recording spans several), the progress bar counting
    window seconds per experiment. A file that cannot be read after all is kept with its problem."""
    durations = np.zeros(len(files)) if durations is None else np.nan_to_num(np.asarray(durations, float))
    expected = sum(plan.length(n, start) for n in np.round(durations * SR).astype(int) for start in plan.starts(n))
    bar = tqdm(total=expected / SR * len(scorer.experiments), unit="s", unit_scale=True, desc="scoring audio",
               disable=not progress)
    file_rows, window_rows = [], []
    parts: dict[str, dict[int, list[pd.DataFrame]]] = {e.name: {k: [] for k in e.folds} for e in scorer.experiments}
    group: list[tuple[str, np.ndarray]] = []
    held = [0]  # samples in the group

    def flush():
        if group:
            for name, folds in scorer.score([i for i, _ in group], [w for _, w in group]).items():
                for k, table in folds.items():
                    parts[name][k].append(table)
            bar.update(held[0] / SR * len(scorer.experiments))
        group.clear()
        held[0] = 0

    for row in files.itertuples():
        try:
            wave = read_audio(row.path)
        except AudioError as err:
            file_rows.append({"utt_id": row.utt_id, "path": row.path, "n_samples": 0, "duration": np.nan,
                              "windows": 0, "problem": str(err)})
            continue
        starts = plan.starts(len(wave))
        file_rows.append({"utt_id": row.utt_id, "path": row.path, "n_samples": len(wave),
                          "duration": round(len(wave) / SR, 4), "windows": len(starts), "problem": ""})
        for k, start in enumerate(starts):
            n = plan.length(len(wave), start)
            wid = _window_id(row.utt_id, k, len(starts))
            window_rows.append({"window_id": wid, "utt_id": row.utt_id, "start": start, "n_samples": n,
                                "duration": round(n / SR, 4)})
            group.append((wid, wave[start: start + n]))
            held[0] += n
            if held[0] >= GROUP_SECONDS * SR:
                flush()
    flush()
    bar.close()
    tables = {name: {k: (pd.concat(p, ignore_index=True) if p else pd.DataFrame(columns=["utt_id"]))
                     for k, p in folds.items()} for name, folds in parts.items()}
    windows = pd.DataFrame(window_rows, columns=["window_id", "utt_id", "start", "n_samples", "duration"])
    return Scored(pd.DataFrame(file_rows), windows, tables)
