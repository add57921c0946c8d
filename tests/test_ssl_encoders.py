"""Bring-your-own self-supervised encoders: a local transformers folder of wav2vec 2.0, HuBERT, WavLM
or data2vec-audio through `antispoof embed`, the state cache, a frozen head and `antispoof predict`.

No weights are downloaded: each folder is a small randomly initialised model of the real
architecture, written by save_pretrained, embedding the real clips of the micro data set.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from antispoof.commands.cli import main as cli
from antispoof.data.audio import read_audio
from antispoof.features.state_cache import StateCache, default_root, weights_fingerprint
from antispoof.inference.fold_scale import FoldScale
from antispoof.inference.states import encode_clips, frozen_encoder
from antispoof.models.encoders import encoder_info
from antispoof.runs import read_table
from antispoof.train.fold import experiment_config, train_fold

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
KINDS = ["wav2vec2", "hubert", "wavlm", "data2vec-audio"]
LAYER_NORM = {"do_stable_layer_norm": True, "feat_extract_norm": "layer"}  # the large models' variant


def save_encoder(folder, kind: str, extractor: dict | None = None, **extra):
    """A small random `kind` model (and optionally its preprocessor_config.json) saved to `folder`."""
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    options = {**SMALL, **({"num_conv_pos_embeddings": 2} if kind == "data2vec-audio" else {}), **extra}
    config = AutoConfig.for_model(kind, **options)
    AutoModel.from_config(config).save_pretrained(folder)
    if extractor is not None:
        Wav2Vec2FeatureExtractor(**extractor).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """kind -> a saved model folder; wav2vec2 with a feature extractor that normalises, hubert with one that does not."""
    root = tmp_path_factory.mktemp("ssl")
    extractors = {"wav2vec2": {"do_normalize": True}, "hubert": {"do_normalize": False}}
    made = {kind: save_encoder(root / kind, kind, extractors.get(kind)) for kind in KINDS}
    made["wav2vec2-layer"] = save_encoder(root / "wav2vec2-layer", "wav2vec2", **LAYER_NORM)
    return made


def clip_waves(micro) -> dict[str, np.ndarray]:
    table = pd.concat([pd.read_csv(micro / f"{s}.csv", dtype={"utt_id": str}) for s in ("train", "test")])
    return {u: read_audio(p) for u, p in zip(table.utt_id, table.path)}


@pytest.mark.parametrize("kind", KINDS)
def test_embed_caches_every_type_on_the_20ms_grid(kind, folders, micro, tmp_path, capsys):
    folder = folders[kind]
    assert cli(["embed", "--data", str(micro), "--encoder", str(folder), "--out", str(tmp_path / "c"),
                "--batch-seconds", "20"]) == 0
    cache = StateCache(tmp_path / "c")
    meta = cache.meta
    assert (cache.n_states, cache.dim) == (SMALL["num_hidden_layers"] + 1, SMALL["hidden_size"])
    assert meta["encoder_type"] == kind and meta["encoder_folder"] == str(folder) and meta["encoder_layers"] == 2
    assert meta["weights_sha256"] == weights_fingerprint(folder) and meta["hop_s"] == 0.02
    waves = clip_waves(micro)
    for utt, wave in waves.items():  # 50 frames per second: one per 320 samples, the last one partly padding
        assert cache.frames(utt) == math.ceil(len(wave) / 320), utt
    # batched with other clips in the cache, alone here: the same states (fp16 rounding apart)
    model = frozen_encoder(str(folder))
    for utt in list(waves)[::5]:
        alone = encode_clips(model, [waves[utt]], cache.layers, torch.device("cpu"))[0]
        np.testing.assert_allclose(np.asarray(cache.states(utt), np.float32), alone.astype(np.float32),
                                   rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("variant", [*KINDS, "wav2vec2-layer"])
def test_a_clips_states_do_not_depend_on_its_batch_nor_on_later_layers(variant, folders, micro):
    model = frozen_encoder(str(folders[variant]), max_seconds=2.0)  # 2 s chunks: long clips are cut and joined
    assert model.batched == (variant == "wav2vec2-layer"), "group norm and data2vec's stacked convolutions: one at a time"
    waves = sorted(clip_waves(micro).values(), key=len)
    short, long = torch.from_numpy(waves[0]), torch.from_numpy(waves[-1])
    with torch.no_grad():
        alone, frames = model.hidden_states(short[None], torch.tensor([len(short)]), [0, 1, 2])
        batch = torch.nn.utils.rnn.pad_sequence([long, short], batch_first=True)
        both, both_frames = model.hidden_states(batch, torch.tensor([len(long), len(short)]), [0, 1, 2])
        early, _ = model.hidden_states(batch, torch.tensor([len(long), len(short)]), [0, 1])
    assert both_frames.tolist() == [math.ceil(len(long) / 320), frames.item()]
    mine = both[1, : frames.item()]
    if model.batched:  # masked batch: float rounding only
        torch.testing.assert_close(mine, alone[0], rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(mine, alone[0])
    assert torch.equal(early, both[..., :2, :]), "states below the deepest asked need no later layer"


def test_waves_are_normalised_as_the_feature_extractor_does_when_it_says_so(folders, micro):
    from transformers import Wav2Vec2FeatureExtractor

    wave = next(iter(clip_waves(micro).values()))
    expected = Wav2Vec2FeatureExtractor(do_normalize=True)(wave, sampling_rate=16000)["input_values"][0]
    normalising, raw = frozen_encoder(str(folders["wav2vec2"])), frozen_encoder(str(folders["hubert"]))
    prepared, frames = normalising.prepare(torch.from_numpy(wave))
    assert frames == math.ceil(len(wave) / 320) and len(prepared) == frames * 320 + 80
    np.testing.assert_allclose(prepared[40: 40 + len(wave)].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert prepared[:40].abs().max() == 0 and prepared[40 + len(wave):].abs().max() == 0
    assert torch.equal(raw.prepare(torch.from_numpy(wave))[0][40: 40 + len(wave)], torch.from_numpy(wave))


def test_one_line_errors(folders, micro, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    def fails(folder) -> str:
        capsys.readouterr()  # what saving the folder printed
        assert cli(["embed", "--data", str(micro), "--encoder", str(folder), "--out", str(tmp_path / "out")]) == 2
        message = capsys.readouterr().err.strip()
        assert "\n" not in message, message
        return message

    (tmp_path / "empty").mkdir()
    assert "no config.json" in fails(tmp_path / "empty")
    other = tmp_path / "conformer"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "wav2vec2-conformer"}))
    message = fails(other)
    assert "'wav2vec2-conformer' is not a supported encoder" in message
    assert all(kind in message for kind in ["whisper", *KINDS])
    bare = save_encoder(tmp_path / "bare", "wavlm")
    (bare / "model.safetensors").unlink()
    assert "no weights" in fails(bare)
    cut = save_encoder(tmp_path / "cut", "hubert")
    weights = load_file(cut / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layers.1." not in k}, cut / "model.safetensors",
              metadata={"format": "pt"})
    message = fails(cut)
    assert "weights missing" in message and "layers.1." in message
    stride = save_encoder(tmp_path / "stride", "wav2vec2", conv_stride=(5, 2, 2, 2, 2, 2, 1))
    assert "strides 160 samples" in fails(stride)


def test_a_fine_tuned_checkpoint_with_older_tensor_names_gives_the_same_states(folders, tmp_path):
    """A Wav2Vec2ForCTC-style file: tensors under wav2vec2.*, weight-norm as weight_g / weight_v, a CTC head."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(folders["wav2vec2"], tmp_path / "ctc")
    renamed = {"wav2vec2." + k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v
               for k, v in load_file(folder / "model.safetensors").items()}
    assert any(k.endswith("weight_g") for k in renamed)
    save_file({**renamed, "lm_head.weight": torch.zeros(5, 32), "lm_head.bias": torch.zeros(5)},
              folder / "model.safetensors", metadata={"format": "pt"})
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    ours, theirs = (encode_clips(frozen_encoder(str(f)), [wave], [0, 1, 2], torch.device("cpu"))[0]
                    for f in (folder, folders["wav2vec2"]))
    assert np.array_equal(ours, theirs)


def test_a_head_trains_on_ssl_states_and_predict_scores_new_audio(folders, micro, tmp_path):
    cfg = experiment_config("ssl_pooled", str(micro), [f"output_root={tmp_path}", "data.folds=3", "trainer.max_epochs=1",
                                                       "trainer.progress_every=0", "data.num_workers=0",
                                                       f"embed.encoder={folders['wavlm']}"])
    out = train_fold(cfg, 0)
    saved = (out / "config.yaml").read_text()
    assert "n_states: 3" in saved and "dim: 32" in saved
    cache = StateCache(default_root(tmp_path, micro, str(folders["wavlm"])))  # what training embedded
    assert cache.meta["encoder_type"] == "wavlm"
    test = read_table(out / "test.parquet")
    assert (test.seg_hop_s == 0.02).all() and test.score.notna().all()
    assert [len(s) for s in test.seg_scores] == [cache.frames(u) for u in test.utt_id]

    clip = pd.read_csv(micro / "test.csv", dtype={"utt_id": str}).iloc[0]
    pred = tmp_path / "pred"
    assert cli(["predict", "--experiment", str(out.parent), "--audio", clip.path, "--out", str(pred)]) == 0
    scores = pd.read_csv(pred / "scores.csv", dtype={"utt_id": str}).set_index("utt_id")
    expected = FoldScale.fit(test).apply(test).set_index("utt_id").loc[clip.utt_id, "score"]  # the fold's scale
    assert scores["score"].iloc[0] == pytest.approx(expected, abs=1e-4), "live states score as the cached ones"
    assert encoder_info(folders["wavlm"]).n_states == 3


def test_whisper_names_and_folders_still_resolve_to_whisper(tmp_path):
    import shutil

    from antispoof.models.whisper_weights import resolve_weights

    folder = shutil.copytree(resolve_weights("whisper-tiny.en"), tmp_path / "my-whisper")  # a transformers folder
    named, local = encoder_info("whisper-tiny.en"), encoder_info(folder)
    assert (named.kind, named.n_states, named.dim, named.hop_s) == ("whisper", 5, 384, 0.02)
    assert (local.kind, local.n_states, local.dim, local.folder) == ("whisper", 5, 384, folder)
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    states = [encode_clips(frozen_encoder(str(e)), [wave], [0, 4], torch.device("cpu"))[0]
              for e in ("whisper-tiny.en", folder)]
    assert states[0].shape == (50, 2, 384) and np.array_equal(states[0], states[1])
