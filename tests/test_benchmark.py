"""SpoofBench builder end to end on real recordings and real synthesizers (a tiny preset)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from antispoof.metrics.conditions import CONDITIONS
from antispoof.config import load_config
from antispoof.spoofbench import sources as src
from antispoof.data.audio import SR
from antispoof.spoofbench.benchmark import build_benchmark
from antispoof.data.manifest import load_segments, load_split, n_segments
from antispoof.spoofbench.plan import ClipPlan, Piece, make_plan
from antispoof.spoofbench.render import Renderer, choose_units, segment_labels
from antispoof.spoofbench.utterances import Utterance, file_duration, join_utterances, speech_units


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


def _utterances(cfg):
    return join_utterances(src.discover(cfg.sources_roots, cfg.corpora), cfg.utterance, cfg.seed)


def test_plan_is_deterministic_and_channel_profiles_balanced(tiny_cfg):
    cfg = tiny_cfg.copy()
    cfg.max_utterances, cfg.max_test_utterances = 300, 150
    utterances = _utterances(cfg)
    plans = [p for fam in make_plan(cfg, utterances) for p in fam]
    again = [p for fam in make_plan(cfg, _utterances(cfg)) for p in fam]
    assert [(p.utt_id, p.channel) for p in plans] == [(p.utt_id, p.channel) for p in again]
    for split in ("train", "test"):
        for label in ("bonafide", "spoof"):
            members = [p for p in plans if p.label == label and p.split == split]
            for profile, share in cfg.channel.profiles.items():
                got = np.mean([p.channel["profile"] == profile for p in members])
                assert abs(got - share) < 2.5 / len(members) + 1e-9, (split, label, profile)
    assert not [p for p in plans if p.corpus == "asterisk" and "full_band" in p.channel["profile"]]
    test_speakers = set(cfg.test_speakers)
    for plan in plans:  # nothing of a test speaker (audio, text or language) is in a train clip
        assert all((piece.source.speaker in test_speakers) == (plan.split == "test") for piece in plan.pieces)


def test_recordings_join_into_utterances_of_the_target_length(tiny_cfg):
    cfg = tiny_cfg.utterance
    clips = src.discover(tiny_cfg.sources_roots, tiny_cfg.corpora)
    utterances = join_utterances(clips, cfg, tiny_cfg.seed)
    used = [c.clip_id for u in utterances for c in u.clips]
    assert sorted(used) == sorted(c.clip_id for c in clips), "every recording in exactly one utterance"
    for u in utterances:
        assert len({c.speaker for c in u.clips}) == 1 and len(u.pauses_s) == len(u.clips) - 1
        assert all(cfg.pause_s[0] <= p <= cfg.pause_s[1] for p in u.pauses_s)
        estimate = sum(file_duration(c.path) * cfg.speech_ratio for c in u.clips) + sum(u.pauses_s)
        if len(u.clips) > 1:
            assert estimate <= cfg.max_s + 1e-6
        assert u.text == "" or u.text.count(".") >= len(u.clips)
    whole = [u for u in utterances if u.corpus == "festvox_ru"]
    assert len(whole) == 620 and all(len(u.clips) == 1 for u in whole)
    estimates = [sum(file_duration(c.path) * cfg.speech_ratio for c in u.clips) + sum(u.pauses_s) for u in utterances]
    assert np.median(estimates) >= 3.0


def test_built_clips_are_utterance_length_with_conditions(tiny, tiny_cfg):
    train, test = load_split(tiny, "train"), load_split(tiny, "test")
    durations = pd.concat([train, test]).duration
    assert durations.median() >= tiny_cfg.utterance.target_s[0]
    assert durations.max() <= max(tiny_cfg.max_duration_s, tiny_cfg.concat.max_total_s) + 0.02
    solution = pd.read_csv(tiny / "solution.csv")
    assert set(solution.condition) <= {"bonafide", *CONDITIONS}
    assert {"seen_classical", "seen_neural", "partial", "concatenation", "unseen_language"} <= set(solution.condition)
    train_languages = {lang for cell in train.language for lang in cell.split("+")}
    neural = {"tts_piper", "voc_hifigan", "tts_kokoro"}
    for row in pd.concat([solution, train]).itertuples():
        attacks = set(row.attack.split("+")) - {"bonafide"}
        assert row.generation == ("bonafide" if not attacks else "+".join(
            sorted({"neural" if a in neural else "classical" for a in attacks}))), row
        unseen_language = any(lang not in train_languages for lang in row.language.split("+"))
        expected = ("unseen_language" if unseen_language else "bonafide" if row.label == "bonafide"
                    else "partial" if row.kind == "partial" else "concatenation" if row.kind == "concat"
                    else "unseen_neural" if "tts_kokoro" in row.attack
                    else "seen_neural" if attacks & neural else "seen_classical")
        assert row.condition == expected, row
    assert set(train.condition) <= {"bonafide", "seen_classical", "seen_neural", "partial", "concatenation"}
    card = (tiny / "README.md").read_text()
    assert "Counts by condition" in card and "Partial spoofs" in card and "half-width" in card


def test_segment_labels_min_pool_any_spoof_sample():
    mask = np.zeros(480, dtype=bool)
    mask[165] = True  # one spoofed sample in the second 10 ms frame
    assert segment_labels(mask).tolist() == [1, 0, 1]
    assert segment_labels(np.zeros(161, dtype=bool)).tolist() == [1, 1]


def test_speech_units_tile_the_recording_at_its_pauses():
    rng = np.random.default_rng(0)
    words = [0.1 * rng.standard_normal(int(s * SR)).astype(np.float32) for s in (0.4, 0.3, 0.5)]
    pause = np.zeros(int(0.2 * SR), np.float32)
    wave = np.concatenate([words[0], pause, words[1], pause, words[2]])
    units = speech_units(wave)
    assert len(units) == 3 and units[0][0] == 0 and units[-1][1] == len(wave)
    assert all(a[1] == b[0] for a, b in zip(units, units[1:]))
    for (start, end), word_start in zip(units, (0, len(words[0]) + len(pause))):
        assert start <= word_start < end
    assert len(speech_units(0.1 * rng.standard_normal(2 * SR).astype(np.float32))) >= 2  # no pause: cut anyway


def test_choose_units_keeps_a_bona_fide_unit_and_at_most_max_regions_runs():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        lengths = list(rng.integers(1000, 8000, int(rng.integers(2, 9))))
        chosen = choose_units(lengths, rng, 3, (0.04, 0.8))
        assert 1 <= len(chosen) < len(lengths) and len(set(chosen)) == len(chosen)
        runs = 1 + sum(b != a + 1 for a, b in zip(chosen, chosen[1:]))
        assert runs <= 3


@pytest.fixture(scope="module")
def renderer(tiny_cfg, tmp_path_factory):
    return Renderer(tiny_cfg, tmp_path_factory.mktemp("audio"), [])


@pytest.fixture(scope="module")
def ru_utterances(tiny_cfg):
    return [Utterance(c.clip_id, (c,)) for c in src.festvox_ru_clips(tiny_cfg.sources_roots)[:3]]


@pytest.fixture(scope="module")
def joined(tiny_cfg):
    """Three Tux Paint stamp narrations of one speaker joined into one utterance (all have texts)."""
    clips = [c for c in src.tuxpaint_clips(tiny_cfg.sources_roots) if c.speaker == "tuxpaint-en" and c.text][:3]
    return Utterance("joined-test", tuple(clips), (0.3, 0.2))


def test_joined_utterance_is_its_recordings_and_pauses(renderer, joined):
    wave, units, is_joined = renderer.utterance(joined)
    assert is_joined and len(units) == 3
    assert units[1][0] - units[0][1] == int(0.3 * SR) and units[2][0] - units[1][1] == int(0.2 * SR)
    assert units[-1][1] == len(wave)
    assert np.abs(wave[units[0][1]: units[1][0]]).max() == 0  # the pause itself


@pytest.mark.parametrize("vocoder", ["voc_world", "voc_hifigan"])
def test_partial_spoof_by_vocoded_twin_marks_exactly_the_replaced_samples(renderer, ru_utterances, vocoder):
    utt = ru_utterances[0]
    plan = ClipPlan("sb_test_partial", "train", "partial", [Piece(utt), Piece(utt, vocoder)], "spoof", "g")
    wave, mask = renderer.partial(plan)
    base, units, _ = renderer.utterance(utt)
    assert len(wave) == len(base) and 0 < mask.mean() < 1
    np.testing.assert_array_equal(wave[~mask], base[~mask])  # untouched where labelled bona fide
    assert np.abs(wave[mask] - base[mask]).mean() > 1e-4      # replaced where labelled spoof
    starts = {a for a, _ in units} | {b for _, b in units}
    edges = np.flatnonzero(np.diff(mask.astype(int))) + 1
    fade = int(renderer.cfg.partial.crossfade_ms * SR / 1000)
    assert all(min(abs(e - s) for s in starts) <= fade for e in edges), "regions are whole units"


@pytest.mark.parametrize("system", ["tts_espeak", "tts_piper"])
def test_partial_spoof_by_tts_replaces_whole_recordings(renderer, joined, system):
    from antispoof.utils import rng_for

    plan = ClipPlan("sb_test_partial_tts", "train", "partial", [Piece(joined), Piece(joined, system)],
                    "spoof", "g")
    wave, mask = renderer.partial(plan)
    base, units, _ = renderer.utterance(joined)
    c = renderer.cfg.partial
    chosen = choose_units([b - a for a, b in units], rng_for(renderer.cfg.seed, "regions", plan.utt_id),
                          c.max_regions, tuple(c.share))
    kept = np.ones(len(base), dtype=bool)
    for i in chosen:
        kept[units[i][0]: units[i][1]] = False
    # Every sample labelled bona fide is the original's, in order; each replaced recording is one
    # spoofed run (the pauses around it stay bona fide).
    np.testing.assert_array_equal(wave[~mask], base[kept])
    runs = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]]))).reshape(-1, 2)
    assert len(runs) == len(chosen)
    labels = segment_labels(mask)
    assert len(labels) == int(np.ceil(len(wave) / 160)) and 0 < labels.mean() < 1


def _concat_with_limit(renderer, plan, max_total_s):
    saved = renderer.cfg.concat.max_total_s
    renderer.cfg.concat.max_total_s = max_total_s
    try:
        return renderer.concat(plan)
    finally:
        renderer.cfg.concat.max_total_s = saved


def test_concat_label_follows_the_pieces_that_fit(renderer, ru_utterances):
    pieces = [Piece(ru_utterances[0]), Piece(ru_utterances[1], "voc_lpc")]
    fits = ClipPlan("sb_test_concat", "train", "concat", list(pieces), "spoof", "g")
    wave, mask = _concat_with_limit(renderer, fits, 60.0)
    assert fits.label == "spoof" and 0 < mask.mean() < 1
    first = len(renderer.utterance(ru_utterances[0])[0])
    assert not mask[:first].any() and mask[-len(renderer.utterance(ru_utterances[1])[0]):].all()

    cut = ClipPlan("sb_test_concat_cut", "train", "concat", list(pieces), "spoof", "g")
    wave, mask = _concat_with_limit(renderer, cut, 0.5)  # the spoofed second piece no longer fits
    assert cut.label == "bonafide" and not mask.any() and len(cut.pieces) == 1
