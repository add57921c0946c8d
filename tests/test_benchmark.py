"""SpoofBench builder end to end on real recordings and real synthesizers (a tiny preset)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from antispoof.config import load_config
from antispoof.data import sources as src
from antispoof.data.benchmark import build_benchmark, make_plan, segment_labels
from antispoof.data.manifest import load_segments, load_split, n_segments


def test_sources_cover_every_corpus_with_texts():
    clips = src.discover(load_config("configs/data/spoofbench_full.yaml").sources_roots,
                         ["tuxpaint", "asterisk", "festvox_ru", "ktuberling"])
    corpora = Counter(c.corpus for c in clips)
    assert set(corpora) == {"tuxpaint", "asterisk", "festvox_ru", "ktuberling"}
    assert corpora["festvox_ru"] == 620
    assert sum(bool(c.text) for c in clips) > 0.8 * (len(clips) - corpora["ktuberling"])
    assert len({c.clip_id for c in clips}) == len(clips)


def test_manifests_validate_and_labels_are_consistent(tiny):
    train, test = load_split(tiny, "train"), load_split(tiny, "test")
    assert len(train) > 30 and len(test) > 5
    assert set(train.label) == {"bonafide", "spoof"} and set(test.label) == {"bonafide", "spoof"}
    for split, table in (("train", train), ("solution", test)):
        segments = load_segments(tiny / f"{split}_segments.npz", table)  # raises on contradictions
        for row in table.itertuples():
            seg = segments[row.utt_id]
            assert len(seg) == n_segments(row.duration)
            info = sf.info(row.audio)
            assert info.samplerate == 16000 and info.channels == 1
            if row.kind == "bonafide":
                assert seg.min() == 1
            if row.kind in ("tts", "vocoder"):
                assert seg.max() == 0
            if row.kind == "partial":
                assert 0 < seg.mean() < 1, "a partial spoof has both bona fide and spoofed frames"


def test_test_split_has_unseen_speakers_and_unseen_attack(tiny, tiny_cfg):
    train, test = load_split(tiny, "train"), load_split(tiny, "test")
    assert not set(train.speaker) & set(test.speaker)
    assert set(test.speaker) <= set(tiny_cfg.test_speakers)
    assert not train.attack.str.contains("tts_kokoro").any()
    assert len(set(train.attack.str.split("+").explode()) - {"bonafide"}) >= 6


def test_ids_do_not_leak_and_submission_files_match(tiny):
    test = pd.read_csv(tiny / "test.csv")
    sample = pd.read_csv(tiny / "sample_submission.csv")
    assert list(sample.utt_id) == list(test.utt_id)
    assert test.utt_id.str.fullmatch(r"sb_[0-9a-f]{12}").all()
    assert set(test.columns) == {"utt_id", "path", "duration"}
    card = (tiny / "README.md").read_text()
    assert "Shortcut probe" in card and "cross-validated EER" in card and "Counts by attack" in card


def test_build_is_deterministic_and_resumes(tiny, tiny_cfg, capsys):
    """Deleting one finished family re-renders exactly that family, with identical audio."""
    work = next((tiny / ".work").iterdir())
    record = sorted(work.glob("*.json"))[3]
    rows = json.loads(record.read_text())["rows"]
    before = {r["utt_id"]: (tiny / r["path"]).read_bytes() for r in rows}
    record.unlink()
    for r in rows:
        (tiny / r["path"]).unlink()
    capsys.readouterr()
    build_benchmark(tiny_cfg, workers=1)
    out = capsys.readouterr().out
    families = len(list(work.glob("*.json")))
    assert f"resuming: {families - 1} of {families} families already rendered" in out
    assert {u: (tiny / f"audio/{u}.flac").read_bytes() for u in before} == before


def test_plan_is_deterministic_and_channels_balanced(tiny_cfg):
    clips = src.discover(tiny_cfg.sources_roots, tiny_cfg.corpora)
    cfg = tiny_cfg.copy()
    cfg.max_sources = 300
    plans = [p for fam in make_plan(cfg, clips) for p in fam]
    again = [p for fam in make_plan(cfg, clips) for p in fam]
    assert [(p.utt_id, p.channel) for p in plans] == [(p.utt_id, p.channel) for p in again]
    for label in ("bonafide", "spoof"):
        members = [p for p in plans if p.label == label]
        share = np.mean([p.channel["narrowband"] for p in members])
        assert abs(share - cfg.channel.narrowband_share) < 1.5 / len(members) + 1e-9


def test_segment_labels_min_pool_any_spoof_sample():
    mask = np.zeros(480, dtype=bool)
    mask[165] = True  # one spoofed sample in the second 10 ms frame
    assert segment_labels(mask).tolist() == [1, 0, 1]
    assert segment_labels(np.zeros(161, dtype=bool)).tolist() == [1, 1]


@pytest.fixture(scope="module")
def renderer(tiny_cfg, tmp_path_factory):
    from antispoof.data.benchmark import _Renderer

    return _Renderer(tiny_cfg, tmp_path_factory.mktemp("audio"), [])


@pytest.fixture(scope="module")
def ru_clips(tiny_cfg):
    return src.festvox_ru_clips(tiny_cfg.sources_roots)[:3]


def test_partial_spoof_mask_marks_exactly_the_replaced_samples(renderer, ru_clips):
    from antispoof.data.benchmark import ClipPlan, Piece

    clip = ru_clips[0]
    plan = ClipPlan("sb_test_partial", "train", "partial", [Piece(clip), Piece(clip, "voc_world")], "spoof", "g")
    wave, mask = renderer.partial(plan)
    base = renderer.source(clip)
    assert len(wave) == len(base) and 0 < mask.mean() < 1
    np.testing.assert_array_equal(wave[~mask], base[~mask])  # untouched where labelled bona fide
    assert np.abs(wave[mask] - base[mask]).mean() > 1e-4      # replaced where labelled spoof


def _concat_with_limit(renderer, plan, max_total_s):
    saved = renderer.cfg.concat.max_total_s
    renderer.cfg.concat.max_total_s = max_total_s
    try:
        return renderer.concat(plan)
    finally:
        renderer.cfg.concat.max_total_s = saved


def test_concat_label_follows_the_pieces_that_fit(renderer, ru_clips):
    from antispoof.data.benchmark import ClipPlan, Piece

    pieces = [Piece(ru_clips[0]), Piece(ru_clips[1], "voc_lpc")]
    fits = ClipPlan("sb_test_concat", "train", "concat", list(pieces), "spoof", "g")
    wave, mask = _concat_with_limit(renderer, fits, 60.0)
    assert fits.label == "spoof" and 0 < mask.mean() < 1
    first = len(renderer.source(ru_clips[0]))
    assert not mask[:first].any() and mask[-len(renderer.source(ru_clips[1])):].all()

    cut = ClipPlan("sb_test_concat_cut", "train", "concat", list(pieces), "spoof", "g")
    wave, mask = _concat_with_limit(renderer, cut, 0.5)  # the spoofed second piece no longer fits
    assert cut.label == "bonafide" and not mask.any() and len(cut.pieces) == 1
