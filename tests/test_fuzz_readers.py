"""Every reader of a user file, fed arbitrary bytes: it returns a result or raises ONE ManifestError
whose message is one line naming the file, never another exception (a pandas, csv, json, numpy or
unicode error would reach the user as a traceback from inside a library).

The strategies mix raw bytes with near-valid files (a valid file with a field, a row or the encoding
mutated: BOMs, NULs, invalid UTF-8, quotes, huge numbers, NaN / inf, empty), because random bytes
alone rarely get past the first parse and never reach the checks behind it. `@example`s pin inputs
that once crashed a reader or sit at a library limit (deep JSON, 5000-digit integers, a field over
the csv module's 128 KiB limit). Each example writes into a fresh temporary folder (only the
FinVolution audio is shared, read-only), and the example database is off: failures are not replayed
from a local store, so every run explores afresh (Hypothesis still keeps its own git-ignored
`.hypothesis/constants/` cache).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from antispoof.data import manifest as mf
from antispoof.data.layout import load_competition
from antispoof.importers.common import read_fields, read_protocol
from antispoof.importers.native import ASV5_COLUMNS, ASV21_COLUMNS, _read_trials, import_finvolution
from antispoof.schema import ManifestError
from antispoof.submit.scorer import evaluate_files, score_submission


def fuzz(max_examples: int) -> settings:
    """No deadline (the first example pays for imports), no example database (see above)."""
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ---- strategies ------------------------------------------------------------------------------------

NASTY = ["", " ", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-320", "9" * 40, "1e11", "-0",
         "0", "1", "2", "1.0", "0x10", "True", "null", "None", '"', '""', '"a,b"', "'", "a\tb", "a b", "\x00",
         "\ufeff", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "é", "日本", "bonafide", "spoof", "Bonafide", " spoof ",
         "bona-fide", "-", ",", "\\", "../../etc/passwd", "/abs/x.wav", "x.wav", "A01", "utt_id", "label", "filename",
         "cm-score", "score", "start", "end", "speech_name"]  # the last ones: column names the readers rename or pick


def field() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY), st.text(max_size=12))


@st.composite
def near_valid(draw, rows: list[list[str]], sep: str = ",") -> bytes:
    """A valid table (header included, if it has one) with up to three mutations, then encoded,
    possibly with bytes spliced in or cut off."""
    rows = [list(r) for r in rows]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(rows) - 1))
        kind = draw(st.sampled_from(["set", "set", "set", "drop_field", "add_field", "drop_row", "copy_row"]))
        if kind == "set" and rows[i]:
            rows[i][draw(st.integers(0, len(rows[i]) - 1))] = draw(field())
        elif kind == "drop_field" and rows[i]:
            rows[i].pop(draw(st.integers(0, len(rows[i]) - 1)))
        elif kind == "add_field":
            rows[i].append(draw(field()))
        elif kind == "drop_row" and len(rows) > 1:
            rows.pop(i)
        elif kind == "copy_row":
            rows.insert(draw(st.integers(0, len(rows))), list(rows[i]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(sep.join(r) for r in rows) + draw(st.sampled_from([newline, "", newline * 2]))
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"])), "replace")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf", b'"', b"\r"]))\
            + data[at:]
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def file_bytes(rows: list[list[str]], sep: str = ",") -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), near_valid(rows, sep), near_valid(rows, sep))


# ---- the property ------------------------------------------------------------------------------------

@contextmanager
def bounded_memory(extra: int = 2 << 30):
    """At most `extra` more bytes of address space while a reader runs (Linux; elsewhere no bound): a
    reader that sizes an allocation by a value in a tiny file (a segment-label array from a duration
    of 2e8 s was one) then fails with MemoryError, a test failure naming the input, instead of
    filling the machine's memory until the kernel kills the whole run."""
    try:
        import resource
        with open("/proc/self/statm") as fh:
            in_use = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        yield
        return
    limit = in_use + extra if hard == resource.RLIM_INFINITY else min(in_use + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def one_line_error_naming(*paths: Path):
    """The body either returns, or raises a ManifestError (or a subclass) of one line that starts
    with one of `paths`, as `schema.fail` writes it (`<file>[ row N]: problem`). Any other exception
    (MemoryError included, see bounded_memory) propagates, and fails the test with its own traceback."""
    try:
        with bounded_memory():
            yield
    except ManifestError as err:
        message = str(err)
        assert len(message.splitlines()) == 1, f"not one line: {message!r}"
        assert message.startswith(tuple(map(str, paths))), f"names none of {paths} first: {message!r}"


@contextmanager
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


# ---- manifests: train.csv, test.csv + solution.csv ---------------------------------------------------

TRAIN = [["utt_id", "path", "duration", "label", "attack"], ["007", "a/u1.wav", "1.5", "bonafide", "-"],
         ["u2", "a/u2.wav", "2.0", "spoof", "A01"]]
TEST = [["utt_id", "path", "duration"], ["007", "a/u1.wav", "1.5"], ["u2", "a/u2.wav", "2.0"]]
SOLUTION = [["utt_id", "label", "attack"], ["007", "bonafide", "-"], ["u2", "spoof", "A01"]]


def table(rows, sep: str = ",") -> bytes:
    return ("\n".join(sep.join(r) for r in rows) + "\n").encode()


def audio_files(d: Path) -> None:
    (d / "a").mkdir()
    for name in ("u1.wav", "u2.wav"):
        (d / "a" / name).write_bytes(b"")  # load_split only checks that the file is there


@fuzz(150)
@given(data=file_bytes(TRAIN), check_files=st.booleans())
@example(data=table(TRAIN), check_files=True)
@example(data=table([TRAIN[0], ["u1", "a/u1.wav", "1", "bonafide", "x" * 140_000]]), check_files=False)
def test_train_manifest(data, check_files):
    with folder() as d:
        audio_files(d)
        (d / "train.csv").write_bytes(data)
        with one_line_error_naming(d / "train.csv"):
            train = mf.load_split(d, "train", check_files=check_files)
            assert train["duration"].gt(0).all() and train["label"].isin(["bonafide", "spoof"]).all()


@fuzz(150)
@given(test=st.one_of(st.just(table(TEST)), file_bytes(TEST)),
       solution=st.one_of(st.just(table(SOLUTION)), file_bytes(SOLUTION), st.none()))
@example(test=table(TEST), solution=table(SOLUTION))
@example(test=table(TEST), solution=table([SOLUTION[0], ["008", "bonafide", "-"], SOLUTION[2]]))  # ids differ
# found by the fuzzer: a finite, positive, absurd duration made load_solution allocate its constant segment
# labels (duration / 10 ms bytes): a raw ValueError at 1e40 s, MemoryError at 1e11 s, an OOM kill at 2e8 s
@example(test=table([TEST[0], ["007", "a/u1.wav", "9" * 40], TEST[2]]), solution=table(SOLUTION))
@example(test=table([TEST[0], ["007", "a/u1.wav", "1e11"], TEST[2]]), solution=table(SOLUTION))
def test_test_manifest_and_solution(test, solution):
    with folder() as d:
        audio_files(d)
        (d / "test.csv").write_bytes(test)
        if solution is not None:
            (d / "solution.csv").write_bytes(solution)
        with one_line_error_naming(d / "test.csv", d / "solution.csv"):
            mf.load_split(d, "test")
            if solution is not None:
                mf.load_solution(d)


# ---- submissions and the scorer ----------------------------------------------------------------------

IDS = ["007", "u1", "u2", "u3"]
GROUND = [["utt_id", "label", "attack"], ["007", "bonafide", "-"], ["u1", "spoof", "A01"], ["u2", "bonafide", "-"],
          ["u3", "spoof", "A02"]]
SUBMISSIONS = {  # (file name, competition.json or None, a valid submission)
    "labels": ("sub.csv", None, [["utt_id", "label"], ["007", "0"], ["u1", "1"], ["u2", "1"], ["u3", "1"]]),
    "scores": ("sub.csv", None, [["utt_id", "score"], ["007", "2.5"], ["u1", "-1"], ["u2", "0.3"], ["u3", "-7e3"]]),
    "both": ("sub.csv", None, [["utt_id", "label", "score"], ["007", "0", "1"], ["u1", "1", "-1"], ["u2", "0", "2"],
                               ["u3", "1", "-2"]]),
    "regions": ("sub.csv", None, [["utt_id", "start", "end"], ["u1", "0.10", "0.50"], ["u3", "0", "1.2"]]),
    "asvspoof5": ("sub.tsv", None, [["filename", "cm-score"], ["007", "1.5"], ["u1", "-3"], ["u2", "0.1"],
                                    ["u3", "-0.2"]]),
    "headerless": ("sub.csv", {"id_column": "speech_name", "positive_value": 0, "negative_value": 1, "header": False,
                               "id_extension": ".wav"},
                   [["007.wav", "1"], ["u1.wav", "0"], ["u2.wav", "1"], ["u3.wav", "0"]]),
}


def scoring_set(d: Path, competition: dict | None) -> None:
    """A small valid data set: test.csv, solution.csv (both classes) and, optionally, competition.json."""
    (d / "test.csv").write_bytes(table([["utt_id", "path", "duration"], *[[u, f"{u}.wav", "1.5"] for u in IDS]]))
    (d / "solution.csv").write_bytes(table(GROUND))
    if competition is not None:
        (d / "competition.json").write_text(json.dumps(competition))


def submission(kind: str) -> st.SearchStrategy[tuple[str, bytes]]:
    name, _, rows = SUBMISSIONS[kind]
    return st.tuples(st.just(kind), file_bytes(rows, "\t" if name.endswith(".tsv") else ","))


@fuzz(250)
@given(case=st.sampled_from(sorted(SUBMISSIONS)).flatmap(submission))
@example(case=("scores", table(SUBMISSIONS["scores"][2])))
# found by the fuzzer: an ASVspoof 5 TSV with a column named like the id column the scorer renames filename to
@example(case=("asvspoof5", table([["filename", "cm-score", "utt_id"], ["007", "1", "007"]], "\t")))
def test_submission_scorer(case):
    kind, data = case
    name, competition, _ = SUBMISSIONS[kind]
    with folder() as d:
        scoring_set(d, competition)
        (d / name).write_bytes(data)
        with one_line_error_naming(d / name):
            result = score_submission(d / name, d)
            assert result["n"] == len(IDS)


SCORES = SUBMISSIONS["asvspoof5"][2]
KEYS = [["filename", "cm-label"], ["007", "bonafide"], ["u1", "spoof"], ["u2", "bonafide"], ["u3", "spoof"]]


@fuzz(150)
@given(scores=st.one_of(st.just(table(SCORES, "\t")), file_bytes(SCORES, "\t")),
       keys=st.one_of(st.just(table(KEYS, "\t")), file_bytes(KEYS, "\t")))
def test_asvspoof5_score_and_key_files(scores, keys):
    with folder() as d:
        (d / "scores.tsv").write_bytes(scores)
        (d / "keys.tsv").write_bytes(keys)
        with one_line_error_naming(d / "scores.tsv", d / "keys.tsv"):
            assert 0 <= evaluate_files(d / "scores.tsv", d / "keys.tsv")["eer"] <= 1


# ---- competition.json ----------------------------------------------------------------------------------

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                        st.sampled_from(["utt_id", "label", "score", "spoof", "bonafide", ".wav", "wav", ""]),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                             max_size=2))
KEYS_JSON = st.sampled_from(["id_column", "label_column", "score_column", "positive", "positive_value",
                             "negative_value", "header", "id_extension", "unknown"])


@st.composite
def competition_bytes(draw) -> bytes:
    settings_ = dict(SUBMISSIONS["headerless"][1]) if draw(st.booleans()) else {}
    for key, value in draw(st.dictionaries(KEYS_JSON, JSON_VALUES, max_size=3)).items():
        settings_[key] = value
    text = json.dumps(settings_) if draw(st.integers(0, 5)) else json.dumps(list(settings_.items()))
    data = text.encode()
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\x00", b"{", b"]", b"NaN", b"1" * 5000])) + data[at:]
    return data


@fuzz(200)
@given(data=st.one_of(st.binary(max_size=100), competition_bytes(), competition_bytes()))
@example(data=b"[" * 100_000)
@example(data=b'{"positive_value": ' + b"1" * 5000 + b"}")
@example(data=b'{"id_column": ["x"], "header": false}')
def test_competition_json(data):
    """load_competition, and then the scorer on a valid submission under whatever settings it accepted
    (a setting it lets through must not crash the code that uses it)."""
    with folder() as d:
        scoring_set(d, None)
        (d / "competition.json").write_bytes(data)
        (d / "sub.csv").write_bytes(table(SUBMISSIONS["scores"][2]))
        with one_line_error_naming(d / "competition.json", d / "sub.csv"):
            load_competition(d)
            score_submission(d / "sub.csv", d)


# ---- ASVspoof protocols and keys -----------------------------------------------------------------------

PROTOCOLS = {  # a reader, and valid lines of its corpus
    "2019": (lambda p: read_protocol(p, "train", {}),
             [["LA_0079", "LA_T_1138215", "-", "-", "bonafide"], ["LA_0079", "LA_T_1271820", "-", "A01", "spoof"]]),
    "asvspoof5": (lambda p: _read_trials(p, ASV5_COLUMNS, {}),
                  [["T_4850", "T_0000000000", "F", "-", "-", "-", "AC3", "A05", "spoof", "-"],
                   ["T_3734", "T_0000000011", "F", "-", "-", "-", "-", "bonafide", "bonafide", "-"]]),
    "2021LA": (lambda p: _read_trials(p, ASV21_COLUMNS["LA"], {}),
               [["LA_0009", "LA_E_9332881", "alaw", "ita_tx", "A07", "spoof", "notrim", "eval"]]),
    "2021DF": (lambda p: read_fields(p, ASV21_COLUMNS["DF"], {}),
               [["LA_0043", "DF_E_2000026", "mp3m4a", "asvspoof", "bonafide", "bonafide", "notrim", "eval", "-", "-",
                 "-", "-", "-"]]),
}


@fuzz(200)
@given(kind=st.sampled_from(sorted(PROTOCOLS)), raw=st.data())
def test_protocol_readers(kind, raw):
    reader, rows = PROTOCOLS[kind]
    data = raw.draw(file_bytes(rows, raw.draw(st.sampled_from([" ", " ", "\t", "  "]))))
    with folder() as d:
        (d / "protocol.txt").write_bytes(data)
        with one_line_error_naming(d / "protocol.txt"):
            rows = reader(d / "protocol.txt")
            assert all((r.label if isinstance(r, tuple) else r["label"]) in ("bonafide", "spoof") for r in rows)


# ---- FinVolution's train_label.txt ---------------------------------------------------------------------

FIN = [["a0f3.wav", "1"], ["b71c.wav", "0"]]


@pytest.fixture(scope="module")
def finvolution(tmp_path_factory) -> Path:
    """train/ with two real clips (module scope: writing audio per example would dominate the run)."""
    root = tmp_path_factory.mktemp("finvolution")
    (root / "train").mkdir()
    t = np.arange(8000) / 16000
    for i, (name, _) in enumerate(FIN):
        sf.write(str(root / "train" / name), (0.2 * np.sin(2 * np.pi * (120 + 40 * i) * t)).astype(np.float32), 16000)
    return root


@fuzz(100)
@given(data=file_bytes(FIN))
@example(data=table(FIN))
def test_finvolution_label_file(finvolution, data):
    labels = finvolution / "train_label.txt"
    labels.write_bytes(data)
    with folder() as d, one_line_error_naming(labels, finvolution / "train"):
        out = import_finvolution(finvolution, d / "fin", workers=1)
        assert set(mf.load_split(out, "train")["label"]) <= {"bonafide", "spoof"}


# ---- pinned: values that break lines are shown escaped -------------------------------------------------

LINE_BREAKS = {  # file name, its bytes, the reader; what the fuzzer found quoted into messages unescaped
    "label": ("train.csv", table(TRAIN[:2] + [["u2", "a/u2.wav", "2.0", "spo\x0bof", "A01"]]),
              lambda d: mf.load_split(d, "train", check_files=False)),
    "header": ("sub.csv", table([["utt_id", "sco\u2028re"], *[[u, "1"] for u in IDS]]),
               lambda d: score_submission(d / "sub.csv", d)),
    "key": ("keys.tsv", table(KEYS[:2] + [["u1", "spo\x85of"]], "\t"),
            lambda d: evaluate_files(d / "scores.tsv", d / "keys.tsv")),
    "name": ("train_label.txt", b"a\x0cb.wav,1\na\x0cb.wav,0\n", lambda d: import_finvolution(d, d / "out")),
}


@pytest.mark.parametrize("case", sorted(LINE_BREAKS))
def test_values_that_break_lines_are_escaped(tmp_path, case):
    name, data, read = LINE_BREAKS[case]
    scoring_set(tmp_path, None)
    (tmp_path / "scores.tsv").write_bytes(table(SCORES, "\t"))
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ManifestError) as err:
        read(tmp_path)
    message = str(err.value)
    assert message.startswith(str(tmp_path / name)) and len(message.splitlines()) == 1, message
    assert any(escaped in message for escaped in ("\\x0b", "\\u2028", "\\x85", "\\x0c")), message
