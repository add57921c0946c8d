"""Self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM, data2vec-audio) as frozen encoders.

The user brings a local transformers folder (config.json and its weights, as `save_pretrained` or
a Hub snapshot leaves them): no such weights are on PyPI, so nothing is installed or downloaded
here. config.json's `model_type` picks the architecture and transformers' AutoModel builds it;
its hidden states are the first layer's input, then every layer's output, the last one after the
final LayerNorm of the "stable layer norm" variants (the model's own output, as Whisper's cache
holds it): num_hidden_layers + 1 states of hidden_size.

Input: the raw 16 kHz waveform, normalised to zero mean and unit variance per chunk when the
folder's preprocessor_config.json says do_normalize (or when it has none), as
Wav2Vec2FeatureExtractor does before pretraining and fine-tuning.

Frames: the convolutional feature encoder strides 320 samples (20 ms) with a 400-sample receptive
field. Each chunk is zero-extended to whole strides and padded by (field - stride) / 2 on either
side, so frame k is centred on 20 ms segment k ([320 k, 320 k + 320) of the chunk) and n samples
give ceil(n / 320) frames: Whisper's grid, so the frozen heads and the 10 ms labels fit either
encoder. An encoder of another stride is refused (the heads read a 20 ms grid).

Padding (`batchable`): wav2vec 2.0, HuBERT and WavLM with a layer-norm feature encoder
(feat_extract_norm "layer": the large models) compute each frame from its own receptive field,
and transformers zeroes padded frames before the one positional convolution and masks them out of
attention, so their chunks are batched with an attention mask (states agree with a chunk's own to
float rounding). Every other encoder lets padding in: group norm (the base wav2vec 2.0, HuBERT and
WavLM) normalises the first convolution over the whole input, padding included; data2vec-audio
stacks five positional convolutions, whose layer norms turn zeroed padding into values the next
one reads; HuBERT's conv_pos_batch_norm does the same before its convolution. Those run one chunk
at a time, unpadded and without a mask, as they were pretrained. Either way a clip's states do not
depend on its batch. Clips longer than `max_seconds` are cut into chunks of that length (whole
strides), encoded separately and joined, as Whisper's are.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from antispoof.models.common import valid_mask
from antispoof.models.ctranslate2_format import WeightsError

SSL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
SAMPLE_RATE = 16000
GRID_SAMPLES = 320  # the heads' 20 ms frame
NORM_EPS = 1e-7     # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files (safetensors, sharded or not, else PyTorch .bin)."""
    folder = Path(folder)
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))


def conv_geometry(config) -> tuple[int, int]:
    """(stride, receptive field) of the convolutional feature encoder, in samples."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def ssl_config(folder: Path):
    """The folder's transformers config, checked for what the state cache needs: the 20 ms grid,
    no adapter (it would change the rate of the last state) and weight files to load."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    stride, _ = conv_geometry(config)
    if stride != GRID_SAMPLES:
        raise WeightsError(f"{folder}: its feature encoder strides {stride} samples ({stride / 16:g} ms); the state "
                           f"cache and the heads need the 20 ms grid ({GRID_SAMPLES} samples), as every standard "
                           f"{', '.join(SSL_TYPES)} model has")
    if getattr(config, "add_adapter", False):
        raise WeightsError(f"{folder}: add_adapter is set (an adapter changes the frame rate); use the encoder "
                           "without its adapter")
    if not weight_files(folder):
        raise WeightsError(f"{folder}: config.json but no weights (model.safetensors or pytorch_model.bin); copy "
                           "the checkpoint's weight files into the folder")
    return config


def batchable(config) -> bool:
    """Whether padding cannot reach a chunk's states, so chunks may share a masked batch (module docstring)."""
    return (config.model_type in ("wav2vec2", "hubert", "wavlm") and getattr(config, "feat_extract_norm", "") == "layer"
            and not getattr(config, "conv_pos_batch_norm", False))


def normalises(folder: Path) -> bool:
    """Whether the model reads normalised waves: its feature extractor's do_normalize (True without one)."""
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        return True
    from transformers import AutoFeatureExtractor

    extractor = AutoFeatureExtractor.from_pretrained(folder)
    rate, size = getattr(extractor, "sampling_rate", SAMPLE_RATE), getattr(extractor, "feature_size", 1)
    if rate != SAMPLE_RATE or size != 1:
        raise WeightsError(f"{path}: the model reads {size}-channel audio at {rate} Hz; the encoders here read "
                           f"raw {SAMPLE_RATE} Hz waveforms")
    return bool(getattr(extractor, "do_normalize", True))


@contextmanager
def _quiet_loading():
    """No loading bar and no load report from transformers: what it would warn about (weights left
    to random initialisation) is refused here in one line instead."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(folder: Path, config) -> nn.Module:
    """AutoModel in float32 and eval mode; a checkpoint that leaves any encoder weight to random
    initialisation (transformers only warns) is refused in one line."""
    from transformers import AutoModel

    with _quiet_loading():
        model, info = AutoModel.from_pretrained(folder, config=config, dtype=torch.float32, output_loading_info=True)
    missing = sorted(k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k)  # training's mask vector
    mismatched = sorted(info.get("mismatched_keys", []))
    if missing or mismatched:
        bad = missing or [str(m[0]) if isinstance(m, tuple) else str(m) for m in mismatched]
        raise WeightsError(f"{folder}: {len(bad)} weights {'missing' if missing else 'of another shape'} "
                           f"(e.g. {bad[0]}): not a complete {config.model_type} checkpoint")
    return model.eval()


class SSLEncoder(nn.Module):
    """wave [B, S] + lengths [B] -> chosen hidden states [B, M, layers, D] on the 20 ms grid (`hidden_states`)."""

    segment_hop_s = GRID_SAMPLES / SAMPLE_RATE

    def __init__(self, folder: str | Path, max_seconds: float = 15.0):
        super().__init__()
        if max_seconds * SAMPLE_RATE < GRID_SAMPLES:
            raise ValueError(f"max_seconds must be at least {GRID_SAMPLES / SAMPLE_RATE} s, got {max_seconds}")
        self.folder = Path(folder)
        config = ssl_config(self.folder)
        self.model = load_model(self.folder, config)
        self.stride, self.field = conv_geometry(config)
        self.n_layers = int(config.num_hidden_layers)
        self.normalise = normalises(self.folder)
        self.batched = batchable(config)  # else one chunk at a time
        self.chunk_samples = int(max_seconds * SAMPLE_RATE) // self.stride * self.stride
        self._hook_every_layer()

    @torch.no_grad()
    def _hook_every_layer(self) -> None:
        """transformers installs its hidden-state hooks on the layers present at the first call:
        make that a call with all of them, before `_first_layers` ever shortens the stack."""
        self.model(torch.zeros(1, self.field), output_hidden_states=True)

    @contextmanager
    def _first_layers(self, n: int):
        """Run only the first n transformer layers (the states below them are unchanged)."""
        encoder, every = self.model.encoder, self.model.encoder.layers
        if n < len(every):
            encoder.layers = nn.ModuleList(list(every)[:n])
        try:
            yield
        finally:
            encoder.layers = every

    def prepare(self, chunk: torch.Tensor) -> tuple[torch.Tensor, int]:
        """A chunk's samples -> its encoder input (normalised, padded onto the grid) and its frames."""
        if self.normalise and len(chunk):
            chunk = (chunk - chunk.mean()) / torch.sqrt(chunk.var(unbiased=False) + NORM_EPS)
        frames = max(1, math.ceil(len(chunk) / self.stride))
        left = (self.field - self.stride) // 2
        total = frames * self.stride + self.field - self.stride
        return F.pad(chunk, (left, total - left - len(chunk))), frames

    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None, layers: list[int]) -> torch.Tensor:
        """Encoder inputs [N, S] -> the chosen states [N, T, len(layers), D], running only the
        layers they need (one more than the deepest, so the last state run is never the one kept)."""
        deepest = max(layers)
        with self._first_layers(self.n_layers if deepest + 1 >= self.n_layers else deepest + 1):
            out = self.model(x, attention_mask=mask, output_hidden_states=True)
        states = [out.last_hidden_state if i == self.n_layers else out.hidden_states[i] for i in layers]
        return torch.stack(states, 2)

    def _encode(self, inputs: list[torch.Tensor], frames: list[int], layers: list[int]) -> list[torch.Tensor]:
        """Each chunk's [frames, len(layers), D] states, batched with a mask or one at a time."""
        if not self.batched:
            return [self._forward(x[None], None, layers)[0, :n] for x, n in zip(inputs, frames)]
        lengths = torch.tensor([len(x) for x in inputs], device=inputs[0].device)
        x = nn.utils.rnn.pad_sequence(inputs, batch_first=True)
        states = self._forward(x, valid_mask(lengths, x.shape[1]).long(), layers)
        return [states[i, :n] for i, n in enumerate(frames)]

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor, layers: list[int]):
        """The chosen hidden states (0 = the first layer's input, n_layers = the output) of whole
        clips, chunks joined: -> [B, M, len(layers), D] on the 20 ms grid and frames per clip [B]."""
        if not layers or min(layers) < 0 or max(layers) > self.n_layers:
            raise ValueError(f"layers {layers}: the encoder has hidden states 0-{self.n_layers}")
        pieces = [(i, wave[i, start: min(int(n), start + self.chunk_samples)])
                  for i, n in enumerate(lengths.tolist()) for start in range(0, max(int(n), 1), self.chunk_samples)]
        prepared = [self.prepare(chunk) for _, chunk in pieces]
        states = self._encode([x for x, _ in prepared], [n for _, n in prepared], list(layers))
        clips = [torch.cat([s for (owner, _), s in zip(pieces, states) if owner == i]) for i in range(len(lengths))]
        frames = torch.tensor([len(c) for c in clips], device=wave.device)
        return nn.utils.rnn.pad_sequence(clips, batch_first=True), frames


def model_type(folder: Path) -> str:
    """config.json's model_type (one line when the file is missing or unreadable)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise WeightsError(f"{folder}: no config.json (an encoder folder holds the transformers config.json and its "
                           "weights, as save_pretrained writes them)")
    try:
        return str(json.loads(path.read_text()).get("model_type", ""))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise WeightsError(f"{path}: not a readable JSON config ({type(error).__name__})") from None
