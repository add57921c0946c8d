"""Which frozen encoder a config's `embed.encoder` names, read off its folder's config.json.

  whisper-base, whisper-tiny.en, a CTranslate2 folder or model.bin, or a transformers folder of
  model_type "whisper"                          -> the Whisper encoder (whisper_weights, whisper_detector)
  a transformers folder of model_type wav2vec2, hubert, wavlm or data2vec-audio -> ssl_encoder
  lfcc-linear                                   -> spectral_encoder (no weights: LFCC and linear
                                                   log band energies, one 120-dim state)

Every kind gives `hidden_states(wave, lengths, layers)` -> [B, M, layers, D] on the 20 ms grid, so
the state cache, its heads and `antispoof predict` treat them alike; `encoder_info` says how many
states there are and their size without building a model (what the cache's meta.json and the
heads' n_states / dim are made of).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from antispoof.config import ConfigError
from antispoof.models import spectral_encoder as spectral
from antispoof.models.ctranslate2_format import WeightsError
from antispoof.models.ssl_encoder import SAMPLE_RATE, SSL_TYPES, SSLEncoder, conv_geometry, model_type, ssl_config
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig
from antispoof.models.whisper_weights import MODELS_DIR, PRETRAINED, resolve_weights

ENCODER_TYPES = ("whisper", *SSL_TYPES, "spectral")


@dataclass(frozen=True)
class EncoderInfo:
    """What a frozen encoder is, read off its checkpoint folder's config."""

    kind: str        # one of ENCODER_TYPES
    folder: Path     # the transformers checkpoint folder (a converted one for CTranslate2 Whisper);
                     # for the weight-free spectral front end, just its name
    n_layers: int    # transformer layers: hidden states 0 (the first layer's input) to n_layers
    dim: int         # the size of every hidden state
    hop_s: float     # seconds per frame

    @property
    def n_states(self) -> int:
        return self.n_layers + 1


def _is_whisper_source(name_or_path) -> bool:
    """A known name or a CTranslate2 folder / model.bin: always Whisper (whisper_weights converts it)."""
    path = Path(str(name_or_path))
    return str(name_or_path) in PRETRAINED or path.is_file() or (path / "model.bin").is_file()


def encoder_folder(name_or_path, models_dir: str | Path = MODELS_DIR) -> tuple[Path, str]:
    """`embed.encoder` -> (transformers checkpoint folder, model type); one-line errors for a folder
    without config.json or of a type no encoder here reads."""
    if str(name_or_path) == spectral.NAME:
        return Path(spectral.NAME), "spectral"
    if _is_whisper_source(name_or_path):
        return resolve_weights(name_or_path, models_dir), "whisper"
    path = Path(str(name_or_path))
    if not path.is_dir():
        resolve_weights(path, models_dir)  # says in one line what it is not
    kind = model_type(path)
    if kind not in ENCODER_TYPES:
        raise WeightsError(f"{path}: model_type {kind!r} is not a supported encoder (supported: "
                           f"{', '.join(ENCODER_TYPES)})")
    return path, kind


def encoder_info(name_or_path, models_dir: str | Path = MODELS_DIR) -> EncoderInfo:
    """The encoder's kind, folder, layers, dim and frame hop, from its config alone."""
    folder, kind = encoder_folder(name_or_path, models_dir)
    if kind == "spectral":
        return EncoderInfo(kind, folder, spectral.N_LAYERS, spectral.DIM, spectral.HOP_S)
    if kind == "whisper":
        from transformers import WhisperConfig

        whisper = WhisperConfig.from_pretrained(folder)
        return EncoderInfo(kind, folder, int(whisper.encoder_layers), int(whisper.d_model),
                           WhisperDetector.segment_hop_s)
    config = ssl_config(folder)
    return EncoderInfo(kind, folder, int(config.num_hidden_layers), int(config.hidden_size),
                       conv_geometry(config)[0] / SAMPLE_RATE)


def frozen_encoder(name_or_path, max_seconds: float = 15.0, models_dir: str | Path = MODELS_DIR,
                   quantize: str = "none") -> WhisperDetector | SSLEncoder:
    """The encoder in eval mode, padding masked out (Whisper's detector heads are unused);
    `quantize="int8"`: its linear layers dynamically quantised (quantize_int8); `"bf16"`: run in
    bfloat16 autocast (with_bf16)."""
    folder, kind = encoder_folder(name_or_path, models_dir)
    if kind == "spectral":
        return spectral.SpectralEncoder(max_seconds).eval()  # nothing to quantise
    if kind != "whisper":
        model = SSLEncoder(folder, max_seconds).eval()
    else:
        config = WhisperDetectorConfig(pretrained=str(name_or_path), models_dir=str(models_dir),
                                       max_seconds=max_seconds, pad_to="batch", apply_spec_augment=False)
        model = WhisperDetector(config).eval()
    quantize = check_quantize(quantize)
    return quantize_int8(model) if quantize == "int8" else with_bf16(model) if quantize == "bf16" else model


QUANTIZE = ("none", "int8", "bf16")


def check_quantize(quantize: str) -> str:
    if quantize not in QUANTIZE:
        raise ConfigError(f"embed.quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    return quantize


def with_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """Mark the encoder to run under bfloat16 autocast (`autocast_dtype`, read by whoever calls
    hidden_states): matmuls and convolutions in bf16, log-mel, softmax and layer norms in float32.
    Unlike int8 it keeps float32's range, so the states drift by about 1 % instead of 5-26 %
    (bench/embed_speed.py). Fast only where the hardware has bf16 dot products (AVX512-BF16 or AMX
    on the CPU, any recent GPU); elsewhere the CPU emulates them, slower than float32."""
    model.autocast_dtype = torch.bfloat16
    return model


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every nn.Linear (PyTorch's quantize_dynamic): weights stored int8
    (one scale per tensor), activations quantised on the fly per batch, matmuls in int8 (fbgemm).
    The encoder's time goes to its linear layers (attention projections and the 4x MLP), so this is
    where a CPU gains; the convolutional front end and layer norms stay float32. CPU only: PyTorch
    has no dynamic-int8 kernels for CUDA."""
    import warnings

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (not installed)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
