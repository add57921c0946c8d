"""Corpus importers: a published corpus or a competition CSV -> the manifest layout (data/layout.py).

One module per format family: `protocols` (PartialSpoof, ASVspoof 2019 LA), `competition_csv`
(any labelled CSV), `native` (FinVolution 2024, ASVspoof 5, ASVspoof 2021 LA / DF, In-the-Wild);
`common` holds what they share. Only the command layer imports this package.
"""
from antispoof.importers.competition_csv import import_competition_csv
from antispoof.importers.native import (FORMATS, TRACKS, import_asvspoof5, import_asvspoof2021, import_finvolution,
                                        import_inthewild, import_native)
from antispoof.importers.protocols import import_asvspoof2019_la, import_partialspoof

__all__ = ["FORMATS", "TRACKS", "import_asvspoof2019_la", "import_asvspoof5", "import_asvspoof2021",
           "import_competition_csv", "import_finvolution", "import_inthewild", "import_native",
           "import_partialspoof"]
