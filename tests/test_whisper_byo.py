"""Bring-your-own Whisper: CTranslate2 folders of any dtype through `model.pretrained`, on real weights.

whisper-tiny.en as shipped (fp16) is re-encoded here by a small writer of the CTranslate2 format
(fp32, bf16, int8 with per-row scales, int16 with one scale), the way CTranslate2's converter
quantises, and then converted by the code under test.
"""
from __future__ import annotations

import importlib.util
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

import antispoof.models.whisper_weights as whisper_weights
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig
from antispoof.models.whisper_weights import WeightsError, pretrained_source, read_ctranslate2, resolve_weights

TINY = "whisper-tiny.en"
ALIASES = {"decoder/projection/weight": "decoder/embeddings/weight"}  # the one alias tiny.en's file holds
_DTYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
              np.dtype(np.float16): 4}


# ---- a writer of CTranslate2's model.bin (the inverse of read_ctranslate2) -----------------------

def _string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _encode(value: np.ndarray, bf16: bool) -> tuple[int, bytes]:
    if bf16 and value.dtype.kind == "f":  # round to nearest even, keep the top half of the float32
        bits = np.ascontiguousarray(value, dtype=np.float32).view(np.uint32).astype(np.uint64)
        return 5, ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    return _DTYPE_IDS[value.dtype], np.ascontiguousarray(value).tobytes()


def write_ctranslate2(path: Path, spec: str, variables: dict[str, np.ndarray],
                      aliases: dict[str, str] | None = None, bf16: bool = False) -> None:
    """Variables sorted by name (as CTranslate2 writes them), then the alias table."""
    aliases = aliases or {}
    real = sorted((k, v) for k, v in variables.items() if k not in aliases)
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6) + _string(spec) + struct.pack("<II", 1, len(real)))
        for name, value in real:
            dtype_id, raw = _encode(np.asarray(value), bf16)
            f.write(_string(name) + struct.pack(f"<B{value.ndim}I", value.ndim, *value.shape))
            f.write(struct.pack("<BI", dtype_id, len(raw)) + raw)
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in sorted(aliases.items()):
            f.write(_string(alias) + _string(target))


def _quantizable(name: str, value: np.ndarray) -> bool:
    """Linear, conv and embedding weights: the variables CTranslate2 gives a weight_scale."""
    return name.endswith("/weight") and value.ndim >= 2 and name not in ALIASES


def quantize(variables: dict[str, np.ndarray], bits: int) -> dict[str, np.ndarray]:
    """CTranslate2's int8 (scale 127 / max|row|, conv weights per output channel) or int16 (2**10 / max|w|)."""
    out = {}
    for name, value in variables.items():
        if not _quantizable(name, value):
            out[name] = value
            continue
        w = value.astype(np.float32)
        if bits == 8:
            amax = np.abs(w.reshape(len(w), -1)).max(axis=1)
            scale = (127.0 / np.where(amax == 0, 127.0, amax)).astype(np.float32)
            q = np.rint(w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.int8)
        else:
            scale = np.float32(2**10 / np.abs(w).max())
            q = np.clip(np.rint(w * scale), -32768, 32767).astype(np.int16)
        out[name], out[f"{name}_scale"] = q, np.asarray(scale, dtype=np.float32)
    return out


def _step(value: np.ndarray, bits: int) -> np.ndarray:
    """One quantisation step of each row (int8) or of the whole weight (int16), broadcastable."""
    w = value.astype(np.float32)
    if bits == 16:
        return np.float32(np.abs(w).max() / 2**10)
    return (np.abs(w.reshape(len(w), -1)).max(axis=1) / 127).reshape(-1, *[1] * (w.ndim - 1))


# ---- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    """whisper-tiny.en's variables as shipped (fp16), its alias folded back into a pointer."""
    with open(pretrained_source(TINY) / "model.bin", "rb") as f:
        spec, variables = read_ctranslate2(f)
    assert spec == "WhisperSpec" and all(variables[a] is variables[t] for a, t in ALIASES.items())
    return variables


def _ct2_folder(folder: Path, variables: dict, bf16: bool = False) -> Path:
    """A faster-whisper-like folder: model.bin plus the shipped config.json and tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    write_ctranslate2(folder / "model.bin", "WhisperSpec", variables, ALIASES, bf16=bf16)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(pretrained_source(TINY) / extra, folder / extra)
    return folder


def _speech() -> np.ndarray:
    """4 s of real read speech (CMU Arctic, 16 kHz) that pysptk, a project requirement, ships."""
    root = Path(list(importlib.util.find_spec("pysptk").submodule_search_locations)[0])
    wave, rate = sf.read(root / "example_audio_data" / "arctic_a0007.wav", dtype="float32")
    assert rate == 16000
    return wave


def _encode_speech(folder: Path) -> np.ndarray:
    """Encoder output [1500, d] of a checkpoint folder on the speech clip (Whisper's 30 s padding)."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    features = WhisperFeatureExtractor(feature_size=80)(_speech(), sampling_rate=16000, return_tensors="pt")
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        return model.model.encoder(features["input_features"]).last_hidden_state[0].numpy()


# ---- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8", "int16"])
def test_every_dtype_reads_back_as_float_within_its_rounding(kind, shipped, tmp_path):
    variables = ({k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in shipped.items()}
                 if kind in ("float32", "bfloat16") else quantize(shipped, 8 if kind == "int8" else 16))
    write_ctranslate2(tmp_path / "model.bin", "WhisperSpec", variables, ALIASES, bf16=kind == "bfloat16")
    with open(tmp_path / "model.bin", "rb") as f:
        _, got = read_ctranslate2(f)
    assert set(got) == set(shipped), "the *_scale variables are consumed, the alias restored"
    for name, original in shipped.items():
        if original.dtype.kind != "f":
            assert np.array_equal(got[name], original), name
            continue
        assert got[name].dtype.kind == "f" and got[name].shape == original.shape, name
        reference = original.astype(np.float32)
        error = np.abs(got[name].astype(np.float32) - reference)
        if kind == "float32" or (kind.startswith("int") and not _quantizable(ALIASES.get(name, name), original)):
            assert np.array_equal(got[name].astype(np.float32), reference), name
        elif kind == "bfloat16":
            assert (error <= np.abs(reference) * 2**-8 + 1e-30).all(), name
        else:  # rounding to the nearest integer: at most half a step (float32 slack)
            assert (error <= _step(original, 8 if kind == "int8" else 16) * 0.5001 + 1e-7).all(), name


def test_a_float32_ctranslate2_folder_converts_once_to_the_shipped_weights(shipped, tmp_path, monkeypatch):
    models = tmp_path / "models"
    folder = _ct2_folder(tmp_path / "faster-whisper-tiny.en",
                         {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in shipped.items()})
    converted = resolve_weights(folder, models)
    assert converted.parent == models and converted.name.startswith("faster-whisper-tiny.en-ct2-")
    assert (converted / "tokenizer.json").is_file()
    mine, named = load_file(converted / "model.safetensors"), load_file(resolve_weights(TINY) / "model.safetensors")
    assert mine.keys() == named.keys()
    assert all(torch.equal(mine[k], named[k]) for k in named), "fp16 -> fp32 is exact"
    # through the config key, the same encoder as the named model's
    byo = WhisperDetector(WhisperDetectorConfig(pretrained=str(folder), models_dir=str(models)))
    reference = WhisperDetector(WhisperDetectorConfig(pretrained=TINY))
    assert all(torch.equal(a, b) for a, b in zip(byo.encoder.state_dict().values(),
                                                 reference.encoder.state_dict().values()))

    # cached: later calls (folder or model.bin itself) convert nothing; a replaced model.bin converts again
    calls = []
    monkeypatch.setattr(whisper_weights, "convert_ctranslate2", lambda src, out, **kw: calls.append(out) or out)
    assert resolve_weights(folder, models) == converted
    assert resolve_weights(folder / "model.bin", models) == converted
    assert calls == []
    data = bytearray((folder / "model.bin").read_bytes())
    data[-100] ^= 1  # one bit of the last variable, encoder/position_encodings
    (folder / "model.bin").write_bytes(bytes(data))
    replaced = resolve_weights(folder, models)
    assert replaced != converted and calls == [replaced]


def test_an_int8_model_converts_and_encodes_speech_like_the_fp16_one(shipped, tmp_path):
    folder = _ct2_folder(tmp_path / "tiny-int8", quantize(shipped, 8))
    converted = resolve_weights(folder, tmp_path / "models")
    weights = load_file(converted / "model.safetensors")
    for name, ct2 in (("model.encoder.conv1.weight", "encoder/conv1/weight"),
                      ("model.encoder.layers.2.fc1.weight", "encoder/layer_2/ffn/linear_0/weight"),
                      ("model.decoder.embed_tokens.weight", "decoder/embeddings/weight")):
        original = shipped[ct2].astype(np.float32)
        assert (np.abs(weights[name].numpy() - original) <= _step(original, 8) * 0.5001 + 1e-7).all(), name
    int8, fp16 = _encode_speech(converted), _encode_speech(resolve_weights(TINY))
    cosine = (int8 * fp16).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(fp16, axis=1)
    assert cosine.min() > 0.99, f"per-frame cosine down to {cosine.min():.4f}"


def test_ctranslate2s_own_int8_output_reads_back_within_one_step(shipped, tmp_path):
    """The real writer, not ours: CTranslate2's converter quantises tiny.en, we de-quantise it."""
    converters = pytest.importorskip("ctranslate2.converters")
    out = tmp_path / "ct2-int8"
    converters.TransformersConverter(str(resolve_weights(TINY))).convert(str(out), quantization="int8")
    with open(out / "model.bin", "rb") as f:
        _, got = read_ctranslate2(f)
    assert not [k for k in got if k.endswith("_scale")]
    for name in ("encoder/conv1/weight", "encoder/conv2/weight", "encoder/layer_0/self_attention/linear_0/weight",
                 "decoder/layer_3/attention/linear_1/weight", "decoder/embeddings/weight"):
        original = shipped[name].astype(np.float32)
        assert got[name].dtype == np.float32 and got[name].shape == original.shape, name
        assert (np.abs(got[name] - original) <= _step(original, 8) * 0.5001 + 1e-7).all(), name


@pytest.mark.parametrize("fraction, says", [
    (0.5, ["declares 148 variables", "ends inside variable 5 of 148 (decoder/embeddings/weight",
           "144 of 148 missing", "decoder incomplete", "no encoder tensors present"]),
    (0.9, ["ends inside variable 124 of 148 (encoder/layer_2/", "decoder complete (92 variables)",
           "encoder incomplete"]),
    (1e-7, ["inside the header; no tensors present"]),
])
def test_a_truncated_model_bin_is_refused_in_one_line_naming_what_is_missing(fraction, says, tmp_path):
    raw = (pretrained_source(TINY) / "model.bin").read_bytes()
    folder = tmp_path / "cut"
    folder.mkdir()
    (folder / "model.bin").write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(WeightsError) as caught:
        resolve_weights(folder, tmp_path / "models")
    message = str(caught.value)
    print(message)
    assert "\n" not in message and message.startswith(f"{folder / 'model.bin'}: truncated at byte ")
    for text in says:
        assert text in message
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
