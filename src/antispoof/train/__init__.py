"""Fold training (`antispoof train`): `data` (a fold's clips and loaders), `module` (the Lightning
module every detector trains in), `fold` (the runner: config, Trainer, resume, predictions, metrics).
"""
