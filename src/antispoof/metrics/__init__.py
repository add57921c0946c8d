"""Metrics, low in the package (they need only antispoof.schema and utils): `detection` for
utterances (EER, minDCF, actDCF, Cllr, F1, thresholds), `segments` for point-based localisation
(segment EER, utterance scores from segment scores), `localisation` for localisation in time
(range-based EER, region and event precision / recall / F1), `calibration` for the linear
score -> LLR map and its JSON file. Reading ASVspoof 5 score files is the scorer's
(antispoof.submit.scorer.evaluate_files). Every name is also importable from here.
"""
from antispoof.metrics.calibration import Calibration, effective_prior
from antispoof.metrics.detection import (C_FA, C_MISS, P_SPOOF, act_dcf, bayes_threshold, best_f1_threshold,
                                         binary_scores, bonafide_mask, cllr, compute_eer, det_curve, f1_at_threshold,
                                         finite_scores, min_dcf, utterance_metrics)
from antispoof.metrics.localisation import range_eer, region_scores
from antispoof.metrics.segments import (pool_segment_labels, pooled_segment_eer, rescale_segment_scores,
                                        resolution_factor, segment_eer, segment_points,
                                        utterance_eer_from_segments, utterance_scores_from_segments)

__all__ = ["C_FA", "C_MISS", "P_SPOOF", "act_dcf", "bayes_threshold", "best_f1_threshold", "binary_scores",
           "bonafide_mask", "cllr", "compute_eer", "det_curve", "f1_at_threshold", "finite_scores", "min_dcf",
           "utterance_metrics", "pool_segment_labels", "pooled_segment_eer", "rescale_segment_scores",
           "resolution_factor", "segment_eer", "segment_points", "utterance_eer_from_segments",
           "utterance_scores_from_segments", "range_eer", "region_scores", "Calibration", "effective_prior"]
