"""Ensembles over the fold outputs of every detector: voting and stacking.

Layers, each importing only earlier ones (and data, metrics, runs):
tables (find and load fold outputs) -> normalise, thresholds -> crossfit -> vote, features,
segments -> stack -> report. Nothing here imports the training code or the models (the
prediction tables are the whole contract) nor the submission writers and the scorer:
antispoof.commands.ensemble joins the two for ensemble/*.py.
"""
