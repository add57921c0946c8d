"""Prediction tables and fold metrics: the contract every detector family fulfils.

A prediction table is keyed by utt_id with, per clip:
  score            the detector's utterance score (its paper's rule), higher = more bona fide
  score_utt        the utterance branch's own score (NaN when the model has none)
  score_seg_min    the minimum of the segment scores (a spoofed segment spoils the clip)
  seg_scores       segment scores, one per `seg_hop_s` seconds
  seg_hop_s        their resolution
  label            bonafide / spoof (OOF tables only: test.parquet never carries hidden labels)
The ensemble only ever reads these tables; they are stored as runs.PREDICTIONS in the fold folder.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from antispoof.metrics.conditions import eer_by_condition
from antispoof.metrics.detection import f1_at_threshold, utterance_metrics
from antispoof.metrics.localisation import range_eer
from antispoof.metrics.segments import segment_eer
from antispoof.runs import PREDICTIONS, write_table


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision.startswith(("bf16", "16")):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_table(model: torch.nn.Module, loader, device: torch.device, precision: str = "32-true") -> pd.DataFrame:
    """Run a detector over a loader; returns the prediction table (rows in loader order)."""
    model.eval().to(device)
    hop = model.segment_hop_s  # every detector states the resolution of its segment scores
    rows = []
    for batch in loader:
        with _autocast(device, precision):
            out = model(batch[model.input_key].to(device), batch["lengths"].to(device))
        utt = out["utt_score"].float().cpu().numpy()
        utt_branch = out.get("utt_branch_score")
        utt_branch = utt_branch.float().cpu().numpy() if utt_branch is not None else np.full(len(utt), np.nan)
        seg = out["seg_scores"].float().cpu().numpy()
        seg_len = out["seg_lengths"].cpu().numpy()
        for i, utt_id in enumerate(batch["utt_id"]):
            scores = seg[i, : seg_len[i]].astype(np.float32)
            label = int(batch["label"][i])
            rows.append({"utt_id": utt_id, "score": float(utt[i]), "score_utt": float(utt_branch[i]),
                         "score_seg_min": float(scores.min()) if len(scores) else np.nan,
                         "seg_scores": scores, "seg_hop_s": hop,
                         "label": {1: "bonafide", 0: "spoof"}.get(label)})
    return pd.DataFrame(rows)


def table_metrics(table: pd.DataFrame, segments: dict[str, np.ndarray]) -> dict:
    """Utterance EER/minDCF/actDCF/Cllr/F1 of `score`, the point-based segment EER at the model's
    resolution and the range-based (time-weighted) segment EER."""
    known = table[table["label"].notna()]
    if known.empty or known["label"].nunique() < 2:
        return {}
    m = utterance_metrics(known["score"].to_numpy(), known["label"].to_numpy())
    result = {k: m[k] for k in ("eer", "eer_threshold", "min_dcf", "act_dcf", "cllr", "best_f1")}
    result["f1_at_eer"] = f1_at_threshold(known["score"].to_numpy(), known["label"].to_numpy(),
                                          m["eer_threshold"])["f1"]
    hop = float(known["seg_hop_s"].iloc[0])
    seg_scores = dict(zip(known["utt_id"], known["seg_scores"]))
    seg_labels = {u: segments[u] for u in known["utt_id"]}
    result["segment_eer"] = segment_eer(seg_scores, seg_labels, hop)[0]
    result["segment_range_eer"] = range_eer(seg_scores, seg_labels, hop)[0]  # in seconds, not windows
    result["segment_resolution_s"] = hop
    if "condition" in known and known["condition"].notna().all():
        result["eer_by_condition"] = eer_by_condition(known["score"].to_numpy(), known["label"], known["condition"])
    return result


def write_predictions(tables: dict[str, pd.DataFrame], out_dir: Path, data) -> dict:
    """Write oof.parquet (validation part) and test.parquet into a fold folder; return their metrics.

    The test table is written without labels; the hidden solution is joined only to score it.
    """
    write_table(tables["valid"], Path(out_dir) / PREDICTIONS["oof"])
    write_table(tables["test"].drop(columns="label"), Path(out_dir) / PREDICTIONS["test"])
    valid = tables["valid"]
    if "condition" in data.valid:  # the OOF figures per condition too (train.csv has them)
        valid = valid.merge(data.valid[["utt_id", "condition"]], on="utt_id", how="left")
    metrics = {"oof": table_metrics(valid, data.segments), "test": {}}
    if data.solution is not None:
        scored = tables["test"].drop(columns="label").merge(data.solution, on="utt_id", how="left")
        metrics["test"] = table_metrics(scored, data.solution_segments)
    return metrics
