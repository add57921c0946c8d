"""Frozen-encoder detectors: the state cache (embed), its dataset, and the heads trained on it,
on real clips of the tiny SpoofBench with the real whisper-tiny.en weights."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from antispoof.inference import states as embed_module
from antispoof.config import ConfigError, load_config
from antispoof.data.audio import read_audio
from antispoof.data.manifest import load_split
from antispoof.features.state_cache import CacheError, StateCache
from antispoof.features.state_dataset import StateDataset, collate_states
from antispoof.metrics import compute_eer
from antispoof.models.frozen_heads import FrozenHeadConfig, FrozenPooledHead, MHFAHead
from antispoof.runs import read_table
from antispoof.train.fold import experiment_config, train_fold
from antispoof.train.module import class_targets

ENCODER = "whisper-tiny.en"


class Killed(Exception):
    """Stands in for a kill between two shards."""


@pytest.fixture(scope="module")
def cache(tiny, tmp_path_factory):
    """The tiny set's whisper-tiny.en cache, every hidden state, small batches (several shards)."""
    root, layers = embed_module.embed_dataset(tiny, ENCODER, "all", tmp_path_factory.mktemp("cache") / "tiny",
                                              batch_seconds=40)
    return StateCache(root, layers)


def test_cache_equals_the_live_encoder(tiny, cache):
    model = embed_module.frozen_encoder(ENCODER)
    table = pd.concat([load_split(tiny, "train"), load_split(tiny, "test")])
    assert cache.missing(table.utt_id) == [] and cache.n_states == len(model.encoder.layers) + 1
    for row in table.sort_values("duration").iloc[[0, len(table) // 2, -1]].itertuples():
        wave = torch.from_numpy(read_audio(row.audio))[None]
        with torch.inference_mode():
            live, frames = model.hidden_states(wave, torch.tensor([wave.shape[1]]), list(range(cache.n_states)))
        cached = np.asarray(cache.states(row.utt_id), dtype=np.float32)
        assert cached.shape == live.shape[1:] and len(cached) == int(frames[0])
        assert len(cached) == pytest.approx(row.duration / 0.02, abs=2)
        # fp16 storage: equal to ~3 significant digits, whatever batch the clip was encoded in
        np.testing.assert_allclose(cached, live[0].numpy(), rtol=2e-3, atol=2e-3 * float(live.abs().max()))


def test_embed_resumes_after_a_kill_and_keeps_finished_shards(tiny, tmp_path, monkeypatch):
    written = []
    real_write = embed_module.write_shard

    def dies_after_two(root, number, clips):
        if len(written) == 2:
            raise Killed
        written.append([u for u, _ in clips])
        real_write(root, number, clips)

    monkeypatch.setattr(embed_module, "write_shard", dies_after_two)
    with pytest.raises(Killed):
        embed_module.embed_dataset(tiny, ENCODER, "0,2", tmp_path / "c", batch_seconds=30)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").glob("shard_*")}
    assert len(first) == 4  # two shards, each .npy + .csv

    encoded = []
    real_encode = embed_module.encode_clips
    monkeypatch.setattr(embed_module, "write_shard", real_write)
    monkeypatch.setattr(embed_module, "encode_clips",
                        lambda model, waves, layers, device: encoded.append(len(waves)) or real_encode(model, waves, layers, device))
    root, _ = embed_module.embed_dataset(tiny, ENCODER, "0,2", tmp_path / "c", batch_seconds=30)
    every = pd.concat([load_split(tiny, "train"), load_split(tiny, "test")]).utt_id
    done_before = sum(map(len, written))
    assert sum(encoded) == len(every) - done_before, "only the clips the killed run did not finish"
    assert {n: t for n, t in first.items()} == {p.name: p.stat().st_mtime_ns for p in root.glob("shard_*") if p.name in first}
    assert StateCache(root).missing(every) == []


def test_cache_refuses_other_weights_other_data_and_missing_layers(tiny, cache, tmp_path):
    meta = json.loads((cache.root / "meta.json").read_text())
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "meta.json").write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    with pytest.raises(CacheError, match="weights_sha256") as error:
        embed_module.embed_dataset(tiny, ENCODER, "all", forged)
    assert "\n" not in str(error.value) and "--force" in str(error.value)
    (forged / "meta.json").write_text(json.dumps({**meta, "dataset_sha256": "1" * 64, "layers": [0, 1]}))
    with pytest.raises(CacheError, match="dataset_sha256"):
        embed_module.embed_dataset(tiny, ENCODER, "0", forged)
    (forged / "meta.json").write_text(json.dumps({**meta, "layers": [0, 1]}))
    with pytest.raises(CacheError, match="layers"):
        embed_module.embed_dataset(tiny, ENCODER, "0-2", forged)
    with pytest.raises(CacheError, match="layers"):
        StateCache(forged, [3])


def test_a_layer_subset_reads_those_states(cache):
    utt = cache.index.index[0]
    subset = StateCache(cache.root, [1, 3])
    np.testing.assert_array_equal(subset.states(utt), np.asarray(cache.states(utt))[:, [1, 3]])
    assert subset.n_states == 2 and subset.dim == cache.dim


def test_dataset_items_match_the_cache_and_labels_fit_the_frames(tiny, cache):
    from antispoof.data.manifest import load_segments

    train = load_split(tiny, "train")
    data = StateDataset(train, cache, load_segments(tiny / "train_segments.npz", train))
    batch = collate_states([data[i] for i in range(4)])
    assert batch["states"].dtype == torch.float16 and batch["states"].shape[2:] == (cache.n_states, cache.dim)
    for i, utt in enumerate(batch["utt_id"]):
        n = int(batch["lengths"][i])
        assert n == cache.frames(utt) and int(batch["seg_lengths"][i]) == 2 * n
        np.testing.assert_array_equal(batch["states"][i, :n].numpy(), cache.states(utt))
        assert (batch["states"][i, n:] == 0).all()


@pytest.mark.parametrize("head", [FrozenPooledHead, MHFAHead])
def test_a_clips_scores_do_not_depend_on_padding(head):
    torch.manual_seed(0)
    model = head(FrozenHeadConfig(n_states=3, dim=16, compression=8, heads=2, embedding=8)).eval()
    clip = torch.randn(1, 20, 3, 16)
    padded = torch.cat([clip, 50 * torch.randn(1, 15, 3, 16)], 1)
    alone, together = model(clip), model(padded, torch.tensor([20]))
    torch.testing.assert_close(alone["utt_score"], together["utt_score"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone["seg_scores"][0], together["seg_scores"][0, :20], rtol=1e-5, atol=1e-5)
    assert together["seg_scores"][0, 20:].isnan().all()


def test_an_mhfa_head_learns_real_clips(tiny, cache):
    """A few hundred steps on the cached states of the tiny set's training clips fit them (v3's
    neural spoofs, HiFi-GAN copies above all, take Whisper states longer to fit than v2's)."""
    train = load_split(tiny, "train")
    loader = torch.utils.data.DataLoader(StateDataset(train, cache), batch_size=16, shuffle=True,
                                         collate_fn=collate_states, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = MHFAHead(FrozenHeadConfig(n_states=cache.n_states, dim=cache.dim, heads=4, dropout=0.0))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        for batch in loader:
            out = model(batch["states"], batch["lengths"])
            seg = class_targets(model.segment_targets(batch["seg"], out["seg_lengths"]))
            loss = model.losses(out, class_targets(batch["label"]), seg)["total"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        batch = collate_states([StateDataset(train, cache)[i] for i in range(len(train))])
        scores = model(batch["states"], batch["lengths"])["utt_score"].numpy()
    labels = batch["label"].numpy()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert compute_eer(scores[labels == 1], scores[labels == 0])[0] < 0.1


@pytest.mark.parametrize("model", ["whisper_tiny_pooled", "whisper_tiny_mhfa"])
def test_heads_write_the_fold_contract(tiny, cache, tmp_path, model):
    cfg = experiment_config(model, str(tiny), [f"output_root={tmp_path}", "data.folds=3", "trainer.max_epochs=2",
                                               "trainer.progress_every=0", f"embed.root={cache.root}"])
    out = train_fold(cfg, 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and set(metrics["test"]["eer_by_condition"]) >= {"pooled", "seen_classical", "seen_neural"}
    saved = (out / "config.yaml").read_text()
    assert f"n_states: {cache.n_states}" in saved and f"dim: {cache.dim}" in saved
    for part in ("oof", "test"):
        table = read_table(out / f"{part}.parquet")
        assert (table.seg_hop_s == 0.02).all() and table.score.notna().all()
        assert [len(s) for s in table.seg_scores] == [cache.frames(u) for u in table.utt_id]
        assert not any(math.isnan(v) for s in table.seg_scores for v in s)
    again = train_fold(cfg, 0)  # finished: skipped
    assert again == out
    if model == "whisper_tiny_pooled":  # a fold of an earlier build of the data set is refused, not reused
        (out / "metrics.json").write_text(json.dumps({**metrics, "dataset_sha256": "0" * 64}))
        with pytest.raises(ConfigError, match="another build of"):
            train_fold(cfg, 0)


def test_augmented_views_are_cached_and_drawn_per_epoch(tiny, tmp_path):
    wave = load_config("augment/views").wave
    root, layers = embed_module.embed_dataset(tiny, ENCODER, "1", tmp_path / "v", views=3, wave_cfg=wave, seed=1)
    cache = StateCache(root, layers)
    train = load_split(tiny, "train")
    for utt in train.utt_id[:5]:
        plain, copy = np.asarray(cache.states(utt)), np.asarray(cache.states(f"{utt}#aug1"))
        assert abs(len(plain) - len(copy)) <= 1
    changed = [not np.array_equal(cache.states(u), cache.states(f"{u}#aug2")) for u in train.utt_id]
    assert np.mean(changed) > 0.5, "most views differ from their clip"
    data = StateDataset(train, cache, views=3, seed=0)
    drawn = []
    for epoch in range(4):
        data.set_epoch(epoch)
        drawn.append([data[i]["states"].float().sum().item() for i in range(10)])
    assert len({tuple(d) for d in drawn}) > 1, "another epoch draws other views"
    data.set_epoch(0)
    assert [data[i]["states"].float().sum().item() for i in range(10)] == drawn[0]
    assert StateCache(root).missing([f"{u}#aug1" for u in load_split(tiny, "test").utt_id]) != [], \
        "test clips get no augmented views"
    assert json.loads((root / "meta.json").read_text())["views_wave"]["noise"]["p"] == wave.noise.p
    other = load_config("augment/rawboost").wave  # views of another chain are refused, never mixed
    with pytest.raises(CacheError, match="views_wave"):
        embed_module.embed_dataset(tiny, ENCODER, "1", root, views=3, wave_cfg=other, seed=1)


def test_embed_command_takes_an_experiments_cache_settings(tiny, cache, capsys):
    from antispoof.commands.cli import main

    assert main(["embed", "--data", str(tiny), "--model", "whisper_tiny_pooled", "--out", str(cache.root)]) == 0
    assert "all" in capsys.readouterr().out  # every clip already cached: nothing encoded
    assert main(["embed", "--data", str(tiny), "--model", "selcnn_segbw"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "no `embed` section" in error


def test_embed_command_fills_an_experiments_view_cache_in_shards(micro, tmp_path, capsys):
    """`antispoof embed --model <experiment> embed.views=2 ...` in two shards and a merge makes the
    cache the experiment's folds read (augmented views of its wave chain, its seed): training then
    finds every clip cached and encodes nothing."""
    from antispoof.commands.cli import main
    from antispoof.train.data import embed_experiment

    out = tmp_path / "views"
    views = ["embed.views=2", "embed.views_augment=rawboost", "embed.layers=1", "seed=3"]
    for shard in ("0/2", "1/2"):
        assert main(["embed", "--data", str(micro), "--model", "whisper_tiny_pooled", "--out", str(out),
                     "--shard", shard, *views]) == 0
    assert main(["embed", "--data", str(micro), "--model", "whisper_tiny_pooled", "--out", str(out), "--merge",
                 *views]) == 0
    assert "every clip cached" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["views"] == 2 and meta["views_wave"]["rawboost"]["p"] == load_config("augment/rawboost").wave.rawboost.p
    train = load_split(micro, "train")
    cache = StateCache(out)
    assert cache.missing([f"{u}#aug1" for u in train.utt_id]) == []
    cfg = experiment_config("whisper_tiny_pooled", str(micro), [*views, f"embed.root={out}"])
    root, layers = embed_experiment(cfg)
    assert "all clips cached" in capsys.readouterr().out and root == out and layers == [1]
    assert main(["embed", "--data", str(micro), "--model", ENCODER, "embed.views=2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "embed.views=2" in error


def test_every_spelling_of_layers_names_the_same_states():
    """'a-b', 'a,b', a list and a bare int (what `embed.layers=4` parses to) all select states."""
    from antispoof.inference.states import chosen_layers

    assert chosen_layers("0-2,4", 6) == [0, 1, 2, 4] == chosen_layers([4, 2, 1, 0, 2], 6)
    assert chosen_layers(4, 6) == [4] == chosen_layers("4", 6)
    assert chosen_layers("all", 3) == [0, 1, 2]
    with pytest.raises(CacheError, match="hidden states 0-5"):
        chosen_layers(6, 6)
