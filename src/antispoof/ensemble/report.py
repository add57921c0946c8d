"""The report beside a submission: Markdown with PNG figures.

It is drawn after every system is fitted and every file written; the hidden test labels
it needs come from data.manifest.load_solution (what the scorer reads), and change nothing.
  * results table: OOF (cross-fitted) vs hidden test, EER and F1, per model and ensemble;
  * DET curves of every system on OOF and on the hidden test;
  * score histograms of the submitted system by class;
  * EER per attack and per language on the hidden test;
  * segment timelines of a few test clips: hidden 10 ms labels, fused segment scores,
    the segment threshold and the submitted regions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from antispoof.metrics.detection import bonafide_mask, det_curve
from antispoof.utils import atomic_path, write_text_atomic

DET_LIMIT = 1e-3


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on the training machines
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return path


def _det_axis(ax, title: str) -> None:
    from scipy.stats import norm

    ticks = np.array([0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    lim = norm.ppf([DET_LIMIT, 1 - DET_LIMIT])
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("false acceptance rate (spoof accepted) %")
    ax.set_ylabel("false rejection rate (bona fide rejected) %")
    ax.set_title(title)
    ax.grid(alpha=0.3)


def plot_det(systems: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path) -> Path:
    """systems: name -> part -> (scores, bonafide mask); one panel per part."""
    from scipy.stats import norm

    plt = _pyplot()
    parts = ["oof", "test"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), layout="constrained")
    for ax, part in zip(axes, parts):
        for i, (name, by_part) in enumerate(systems.items()):
            if part not in by_part:
                continue
            scores, bona = by_part[part]
            frr, far, _ = det_curve(scores[bona], scores[~bona])
            clip = np.clip([far, frr], DET_LIMIT, 1 - DET_LIMIT)
            ensemble = ":" in name
            ax.plot(norm.ppf(clip[0]), norm.ppf(clip[1]), label=name, lw=2.2 if ensemble else 1,
                    ls="-" if ensemble else "--")
        _det_axis(ax, {"oof": "OOF (cross-fitted)", "test": "hidden test"}[part])
    axes[1].legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def plot_histograms(name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float,
                    bins: int, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.8), squeeze=False, layout="constrained")
    for ax, (part, (scores, bona)) in zip(axes[0], parts.items()):
        edges = np.histogram_bin_edges(scores, bins=bins)
        ax.hist(scores[bona], bins=edges, alpha=0.6, label="bona fide")
        ax.hist(scores[~bona], bins=edges, alpha=0.6, label="spoof")
        ax.axvline(threshold, color="k", ls="--", lw=1, label="F1 threshold")
        ax.set_title(f"{name}: {part}")
        ax.set_xlabel("score (higher = more bona fide)")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_timelines(clips: list[dict], threshold: float, path: Path) -> Path:
    """clips: utt_id, labels (10 ms, 1 = bona fide), scores (fused), hop, regions [(start, end)]."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(clips), 1, figsize=(10, 2.4 * len(clips)), squeeze=False, layout="constrained")
    for ax, clip in zip(axes[:, 0], clips):
        labels = np.asarray(clip["labels"])
        spoof = np.r_[False, labels == 0, False].astype(int)
        edges = np.flatnonzero(np.diff(spoof))
        for a, b in zip(edges[::2], edges[1::2]):
            ax.axvspan(a * 0.01, b * 0.01, color="tab:red", alpha=0.15, lw=0)
        t = (np.arange(len(clip["scores"])) + 0.5) * clip["hop"]
        ax.plot(t, clip["scores"], color="tab:blue", lw=1.2, label="fused segment score")
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label="segment threshold")
        low = ax.get_ylim()[0]
        for a, b in clip["regions"]:
            ax.plot([a, b], [low, low], color="tab:red", lw=5, solid_capstyle="butt")
        ax.set_title(f"{clip['utt_id']} ({clip.get('kind', '')}): red shade = hidden spoof labels, "
                     f"red bar = submitted regions", fontsize=8)
        ax.set_xlim(0, max(len(labels) * 0.01, t[-1] if t.size else 0))
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    return _save(fig, path)


def group_table(scored: dict[str, dict], key: str) -> pd.DataFrame:
    """EER % per group (attack or language) for every system, as the scorer reported it."""
    rows = {name: {g: 100 * v for g, v in result.get(key, {}).items()} for name, result in scored.items()}
    return pd.DataFrame(rows).T.sort_index(axis=1)


def pick_timeline_clips(test: pd.DataFrame, n: int) -> list[str]:
    """Partial spoofs first, then other spoofs, then the rest, each sorted by id (reproducible)."""
    kind = test["kind"] if "kind" in test.columns else pd.Series("", index=test.index)
    order = np.select([kind == "partial", test["label"] == "spoof"], [0, 1], 2)
    ranked = test.assign(_order=order).sort_values(["_order", "utt_id"])
    return ranked["utt_id"].head(n).tolist()


def write_report(path: Path, title: str, sections: list[tuple[str, str]], figures: dict[str, Path]) -> Path:
    """Markdown: titled sections (already formatted), then the figures by relative path."""
    lines = [f"# {title}", ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", body.strip(), ""]
    for caption, fig in figures.items():
        lines += [f"## {caption}", "", f"![{caption}]({fig.name})", ""]
    write_text_atomic(path, "\n".join(lines))
    return path


def solution_parts(test_solution: pd.DataFrame, ids) -> np.ndarray:
    """Hidden bona fide mask in the given id order."""
    return bonafide_mask(test_solution.set_index("utt_id").loc[list(ids), "label"].to_numpy())
