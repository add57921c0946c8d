"""`antispoof embed`: run a frozen encoder once over a data set and cache its hidden states.

    antispoof embed --data data/spoofbench-mini --model whisper-base [--layers 0,1,2,3,4,5]
    antispoof embed --data data/spoofbench-mini --encoder /path/to/wavlm-base-plus   # any local SSL folder

The encoder is Whisper (a known name, a CTranslate2 or transformers Whisper folder) or a local
transformers folder of wav2vec 2.0, HuBERT, WavLM or data2vec-audio (models.encoders, by its
config.json's model_type); both give hidden states on the same 20 ms grid.

Every clip of train and test is encoded (chunks of `max_seconds`, padding masked out, or none at
all for an encoder it would reach: a clip's states do not depend on its batch), the chosen hidden states are stored fp16 on the
20 ms grid in a features.state_cache folder, one shard per encoder batch. Batches are cut by
length (clips sorted by duration, `batch_seconds` of audio each) so padding costs little. A
killed run resumes after its last complete shard; a cache of other weights, another version of
the data set or other layers is refused (--force rebuilds it). On a GPU the encoder runs there.
`--shard I/N` spreads the batches over N processes or machines sharing the cache folder (each writes
`parts/I-of-N/`, resumable on its own), `--merge` moves their shards in.

`views` > 1 adds augmented copies of every training clip (a length-preserving wave chain,
configs/augment/views.yaml, so each copy keeps its clip's labels), cached under `<utt_id>#aug<k>`;
a head then draws one per epoch (features.state_dataset).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from antispoof.augment import WaveAugmenter, wave_augmenter
from antispoof.data.audio import read_audio
from antispoof.data.dataset import clip_labels
from antispoof.data.manifest import load_segments, load_split
from antispoof.features.state_cache import (FRAME_HOP_S, META, CacheError, dataset_fingerprint, default_root,
                                            merge_parts, next_shard_number, open_for_writing, part_dir, read_index,
                                            weights_fingerprint, write_shard)
from antispoof.features.state_dataset import view_id
from antispoof.locks import output_lock
from antispoof.models.encoders import EncoderInfo, check_quantize, cpu_has_bf16, encoder_info
from antispoof.models.spectral_encoder import fingerprint as spectral_fingerprint
from antispoof.models.encoders import frozen_encoder as load_frozen_encoder
from antispoof.models.ssl_encoder import SSLEncoder
from antispoof.models.whisper_detector import WhisperDetector
from antispoof.models.whisper_weights import MODELS_DIR
from antispoof.utils import rng_for


def frozen_encoder(encoder: str, max_seconds: float = 15.0, models_dir: str = str(MODELS_DIR),
                   quantize: str = "none") -> WhisperDetector | SSLEncoder:
    """The encoder `embed.encoder` names (Whisper or self-supervised), in eval mode, padding masked;
    `quantize` = embed.quantize (int8: dynamic int8 linear layers, on the CPU; bf16: bfloat16 autocast)."""
    return load_frozen_encoder(encoder, max_seconds, models_dir, quantize)


def cache_name(encoder: str, quantize: str = "none") -> str:
    """The cache folder's encoder part: an int8 or bf16 cache lives beside the float one, never in it."""
    return str(encoder) if quantize == "none" else f"{Path(str(encoder)).name}-{quantize}"


def cache_root(data_dir: str | Path, encoder: str, quantize: str = "none", root: str | Path | None = None,
               output_root: str | Path = "folds") -> Path:
    """The cache folder: `root` when given, else folds/<dataset>/_embeddings/<cache_name>."""
    return Path(root) if root else default_root(output_root, data_dir, cache_name(encoder, quantize))


def chosen_layers(layers, n_states: int) -> list[int]:
    """'all' | 'a-b' | 'a,b,c' | [a, b] | a (an override `embed.layers=4` arrives as an int) ->
    sorted hidden-state indices, checked against the encoder."""
    if layers in (None, "all"):
        return list(range(n_states))
    if isinstance(layers, int):
        layers = [layers]
    elif isinstance(layers, str):
        values = []
        for part in layers.split(","):
            low, _, high = part.partition("-")
            values += list(range(int(low), int(high) + 1)) if high else [int(low)]
        layers = values
    chosen = sorted({int(v) for v in layers})
    if not chosen or chosen[0] < 0 or chosen[-1] >= n_states:
        raise CacheError(f"layers {layers}: the encoder has hidden states 0-{n_states - 1}")
    return chosen


def length_batches(durations: np.ndarray, batch_seconds: float) -> list[list[int]]:
    """Indices sorted by duration, cut so each batch holds at most `batch_seconds` of padded audio."""
    batches, current, longest = [], [], 0.0
    for i in np.argsort(durations, kind="stable"):
        longest = max(longest, float(durations[i]))
        if current and longest * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current, longest = [], float(durations[i])
        current.append(int(i))
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def encode_clips(model: WhisperDetector | SSLEncoder, waves: list[np.ndarray], layers: list[int], device) -> list[np.ndarray]:
    """Waveforms -> each clip's [frames, len(layers), D] float16 states."""
    tensors = [torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) for w in waves]
    wave = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(device)
    lengths = torch.tensor([len(w) for w in tensors], device=device)
    dtype = getattr(model, "autocast_dtype", None)  # embed.quantize=bf16 (models/encoders.py: with_bf16)
    with torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        states, frames = model.hidden_states(wave, lengths, layers)
    states = states.to(torch.float16).cpu().numpy()
    return [states[i, : int(frames[i])] for i in range(len(waves))]


def clips_to_embed(data_dir: Path, views: int) -> pd.DataFrame:
    """key, utt_id, audio, duration, label, view of every clip (train and test) and augmented copy."""
    tables = [load_split(data_dir, "train")]
    if (Path(data_dir) / "test.csv").is_file():
        tables.append(load_split(data_dir, "test"))
    columns = ["utt_id", "audio", "duration", "label"]
    clips = pd.concat([t.reindex(columns=columns) for t in tables], ignore_index=True).assign(view=0)
    copies = [tables[0].reindex(columns=columns).assign(view=v) for v in range(1, views)]
    clips = pd.concat([clips, *copies], ignore_index=True)
    clips["key"] = [view_id(u, v) for u, v in zip(clips.utt_id, clips.view)]
    return clips


def cache_meta(info: EncoderInfo, encoder: str, data_dir: Path, layers, max_seconds: float, views: int,
               quantize: str = "none", wave_cfg=None) -> dict:
    """What a cache is made of: the fingerprints and settings open_for_writing compares, and what
    the encoder is (type, folder, layers, dim, frame hop), read off the checkpoint's config and
    files (no model is built for it); with augmented views, the wave chain that made them."""
    if info.hop_s != FRAME_HOP_S:  # the heads and the labels read the 20 ms grid
        raise CacheError(f"{info.folder}: frames every {info.hop_s * 1000:g} ms; the state cache holds "
                         f"{FRAME_HOP_S * 1000:g} ms frames")
    return {"encoder": str(encoder), "encoder_type": info.kind, "encoder_folder": str(info.folder),
            "encoder_layers": info.n_layers,
            "weights_sha256": spectral_fingerprint() if info.kind == "spectral" else weights_fingerprint(info.folder),
            "dataset": str(data_dir), "dataset_sha256": dataset_fingerprint(data_dir),
            "layers": chosen_layers(layers, info.n_states), "dim": info.dim,
            "dtype": "float16", "hop_s": info.hop_s, "max_seconds": max_seconds, "views": views,
            **({} if quantize == "none" else {"quantize": quantize}),  # which path made the states
            **({} if views <= 1 else {"views_wave": wave_chain(wave_cfg)})}


def wave_chain(wave_cfg) -> dict:
    """The augmented views' wave chain as plain data, for the cache's meta (views of one chain only)."""
    return json.loads(json.dumps(OmegaConf.to_container(wave_cfg) if OmegaConf.is_config(wave_cfg) else wave_cfg))


def embed_dataset(data_dir: str | Path, encoder: str = "whisper-base", layers="all", root: str | Path | None = None,
                  output_root: str | Path = "folds", batch_seconds: float = 120.0, max_seconds: float = 15.0,
                  views: int = 1, wave_cfg=None, seed: int = 0, device: str | None = None,
                  force: bool = False, models_dir: str = str(MODELS_DIR),
                  shard: tuple[int, int] | None = None, quantize: str = "none") -> tuple[Path, list[int]]:
    """Encode every clip not cached yet; -> the cache folder and the layers asked for (as
    encoder indices; `layers=None`: those of an existing cache, else all). See the module docstring.
    The encoder is only loaded when something is left to encode (a finished cache costs a hash).
    `shard=(i, n)`: only every n-th encoder batch from the i-th, into `parts/` of the cache, for
    n processes or machines sharing the folder; `merge_parts` then moves them in. `quantize="int8"`
    encodes with int8 linear layers (its default folder `<encoder>-int8`, its meta saying so)."""
    data_dir = Path(data_dir)
    check_quantize(quantize)
    if views > 1 and wave_cfg is None:
        raise CacheError(f"views={views} needs a wave augmentation chain (embed.views_augment)")
    root = cache_root(data_dir, encoder, quantize, root, output_root)
    if layers is None:
        layers = json.loads((root / META).read_text())["layers"] if (root / META).is_file() else "all"
    asked = cache_meta(encoder_info(encoder, models_dir), encoder, data_dir, layers, max_seconds, views, quantize,
                       wave_cfg)
    what = f"the {Path(str(encoder)).name} state cache"
    clips = clips_to_embed(data_dir, views)
    if shard is not None:
        if force:
            raise CacheError(f"{root}: --force rebuilds a cache in one process; shard the rebuilt one")
        with output_lock(root, what):  # the cache's meta first, so every shard checks against it
            open_for_writing(root, asked)
    elif not force and (root / META).is_file():  # a finished cache is read without its lock (folds share it)
        _, done = open_for_writing(root, asked)
        if clips.key.isin(done.index).all():
            print(f"{root}: all clips cached")
            return root, asked["layers"]
    target = part_dir(root, *shard) if shard is not None else root
    with output_lock(target, what if shard is None else f"shard {shard[0]}/{shard[1]} of {what}"):
        meta, done = open_for_writing(root, asked, force=force)  # again, under the lock
        todo = clips[~clips.key.isin(done.index)].reset_index(drop=True)
        batches = [todo.iloc[b] for b in length_batches(todo.duration.to_numpy(), batch_seconds)]
        if shard is not None:  # whole batches, as one process would cut them: the same states, bit for bit
            _, part_done = open_for_writing(target, meta)
            batches = [b for k, b in enumerate(batches) if k % shard[1] == shard[0] and
                       not b.key.isin(part_done.index).all()]
        _encode(target, meta, batches, data_dir, encoder, max_seconds, views, wave_cfg, seed, device, models_dir,
                quantize)
    return root, asked["layers"]


def _encode(target: Path, meta: dict, batches: list[pd.DataFrame], data_dir: Path, encoder: str,
            max_seconds: float, views: int, wave_cfg, seed: int, device, models_dir: str, quantize: str) -> None:
    """The writing part of embed_dataset, under the lock of `target`: one shard per batch."""
    if not batches:
        print(f"{target}: nothing left to encode")
        return
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if quantize == "int8" and device.type != "cpu":
        raise CacheError(f"embed.quantize={quantize} runs on the CPU only (no dynamic int8 kernels for {device.type})")
    if quantize == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        print("embed.quantize=bf16: this CPU has no AVX512-BF16 / AMX, so bf16 is emulated and slower than float32")
    model = frozen_encoder(encoder, max_seconds, models_dir, quantize).to(device)
    train = load_split(data_dir, "train") if views > 1 else None
    augment = wave_augmenter(wave_cfg, train) if views > 1 else None
    segments = load_segments(data_dir / "train_segments.npz", train) if views > 1 else {}
    number, started = next_shard_number(target), time.time()
    seconds = float(sum(b.duration.sum() for b in batches))
    bar = tqdm(total=seconds, unit="s", unit_scale=True, desc=f"embed {Path(str(encoder)).name}")
    for rows in batches:
        waves = [_view_wave(row, augment, segments, seed) for row in rows.itertuples()]
        # an existing cache may hold more layers than asked: it is filled with all of its own
        states = encode_clips(model, waves, meta["layers"], device)
        write_shard(target, number, list(zip(rows.key, states)))
        number += 1
        bar.update(min(float(rows.duration.sum()), bar.total - bar.n))  # float sums may overshoot the total
    bar.close()
    n_clips = sum(len(b) for b in batches)
    print(f"{target}: {n_clips} clips ({seconds / 3600:.2f} h) embedded in {time.time() - started:.0f} s")


def merge_embed_parts(data_dir: str | Path, root: Path, views: int = 1) -> Path:
    """Move the shards of every `parts/` folder into the cache (under its lock) and say what is
    still missing."""
    root = Path(root)
    with output_lock(root, "the state cache"):
        moved = merge_parts(root)
        missing = int((~clips_to_embed(Path(data_dir), views).key.isin(read_index(root).index)).sum())
    print(f"{root}: {moved} shard(s) merged" + (f"; {missing} clip(s) not cached yet: run the shards that did not "
                                                f"finish, then merge again" if missing else "; every clip cached"))
    return root


def _view_wave(row, augment: WaveAugmenter | None, segments: dict, seed: int) -> np.ndarray:
    wave = read_audio(row.audio)
    if row.view == 0 or augment is None:
        return wave
    label, seg = clip_labels(row, segments)
    clip = augment(wave, label, seg, rng_for(seed, "view", row.view, row.utt_id))
    if abs(len(clip.wave) - len(wave)) > 160 or clip.relabelled:  # a view reuses its clip's labels
        raise CacheError(f"{row.audio}: augmented view {row.view} changed the clip's length or label; views need "
                         "steps that keep both (configs/augment/views.yaml)")
    return clip.wave
