"""Ensembles over the fold outputs of every detector: voting, stacking, submissions.

Layers, each importing only earlier ones (and data, metrics, predict, submit):
tables (find and load fold outputs) -> normalise, thresholds -> crossfit -> vote, features,
segments -> stack -> report -> pipeline (what ensemble/vote.py and ensemble/stack.py run).
Nothing here imports train.py or the models: the prediction tables are the whole contract.
"""
