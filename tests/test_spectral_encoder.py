"""models.spectral_encoder: linear-frequency features served as one frozen "hidden state"."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from antispoof.commands.predict import predict
from antispoof.features.state_cache import META, StateCache
from antispoof.inference.fold_scale import FoldScale
from antispoof.inference.states import embed_dataset, frozen_encoder
from antispoof.models.encoders import encoder_info
from antispoof.models.frozen_heads import FrozenHeadConfig, FrozenPooledHead
from antispoof.models.spectral_encoder import BANDS, NAME, SpectralEncoder, fingerprint
from antispoof.runs import read_table
from antispoof.train.fold import experiment_config, train_fold

SR = 16000


def test_it_is_an_encoder_of_one_120_dim_state_on_the_20_ms_grid():
    info = encoder_info(NAME)
    assert (info.kind, info.n_states, info.dim, info.hop_s) == ("spectral", 1, 120, 0.02)
    assert isinstance(frozen_encoder(NAME), SpectralEncoder)
    assert isinstance(frozen_encoder(NAME, quantize="int8"), SpectralEncoder), "nothing to quantise"


def test_a_clip_gets_the_same_features_alone_and_in_a_padded_batch():
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in (SR, 2 * SR + 123)]
    model = SpectralEncoder()
    batch = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(w) for w in waves], batch_first=True)
    states, frames = model.hidden_states(batch, torch.tensor([len(w) for w in waves]), [0])
    assert states.shape == (2, 2 * SR // 320 + 1, 1, 120) and frames.tolist() == [51, 2 * SR // 320 + 1]
    alone, n = model.hidden_states(torch.from_numpy(waves[0])[None], torch.tensor([SR]), [0])
    torch.testing.assert_close(alone[0, : int(n[0])], states[0, : int(frames[0])])
    assert (states[0, int(frames[0]):] == 0).all(), "frames past a clip's end are zero"
    with pytest.raises(ValueError, match="hidden states 0-0"):
        model.hidden_states(batch, torch.tensor([SR, SR]), [1])


@pytest.mark.parametrize("hz", [440.0, 3000.0, 7000.0])
def test_a_pure_tone_peaks_in_its_own_linear_band(hz):
    t = np.arange(SR) / SR
    wave = torch.from_numpy((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))[None]
    states, _ = SpectralEncoder().hidden_states(wave, torch.tensor([SR]), [0])
    bands = states[0, 5:-5, 0, 60:].mean(0)
    # pre-emphasis tilts the spectrum, but a tone still dominates its own band by far
    assert int(bands.argmax()) == int(hz / (SR / 2) * BANDS)


def test_batch_input_norm_standardises_each_feature_and_layer_norm_each_frame():
    states = torch.randn(4, 50, 1, 120) * torch.linspace(0.1, 30, 120) + torch.linspace(-20, 5, 120)
    batch = FrozenPooledHead(FrozenHeadConfig(n_states=1, dim=120, input_norm="batch")).train()
    out = batch.normalise(states).reshape(-1, 120)
    torch.testing.assert_close(out.mean(0), torch.zeros(120), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(120), atol=1e-3, rtol=0)
    layer = FrozenPooledHead(FrozenHeadConfig(n_states=1, dim=120)).normalise(states)
    torch.testing.assert_close(layer.mean(-1), torch.zeros(4, 50, 1), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="input_norm must be 'layer' or 'batch'"):
        FrozenHeadConfig(n_states=1, dim=120, input_norm="instance")


def test_spectral_pooled_trains_from_its_cache_and_predict_computes_the_same_features_live(tiny, tmp_path):
    cfg = experiment_config("spectral_pooled", str(tiny), ["trainer.max_epochs=1", "data.folds=3",
                                                           "data.num_workers=0", "trainer.progress_every=0",
                                                           f"output_root={tmp_path}"])
    out = train_fold(cfg, 0)
    meta = json.loads((tmp_path / tiny.name / "_embeddings" / NAME / META).read_text())
    assert meta["weights_sha256"] == fingerprint() and meta["encoder_type"] == "spectral"
    cache = StateCache(tmp_path / tiny.name / "_embeddings" / NAME)
    assert (cache.n_states, cache.dim) == (1, 120)
    assert 0 <= json.loads((out / "metrics.json").read_text())["oof"]["eer"] <= 1
    test = pd.read_csv(tiny / "test.csv").head(3)
    result = predict([str(tiny / p) for p in test.path], experiment=str(out.parent), out=tmp_path / "pred",
                     progress=False)
    table = read_table(out / "test.parquet").set_index("utt_id")
    expected = FoldScale.fit(table).apply(table).loc[test.utt_id, "score"].to_numpy()
    got = result["scores"].set_index("utt_id").loc[[p.split("/")[-1].rsplit(".", 1)[0] for p in test.path], "score"]
    np.testing.assert_allclose(got.to_numpy(), expected, atol=1e-3)
