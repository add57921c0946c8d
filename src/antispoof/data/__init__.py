"""Data layer: manifests, sources, generators, importers, folds and loaders."""
