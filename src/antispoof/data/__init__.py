"""The data layer every stage reads: manifests and their layout on disk, audio I/O and checks,
signal primitives, sound files on this machine, the training dataset and folds. The benchmark
builder (spoofbench) and the importers write data sets through it; it imports neither."""
