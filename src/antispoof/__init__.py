"""antispoof: Kaggle-style pipeline for utterance- and segment-level spoofed speech detection."""
