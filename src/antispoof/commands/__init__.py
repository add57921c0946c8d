"""Where a user's command starts: `antispoof <command>` (cli), the ensemble step behind
ensemble/vote.py and stack.py (ensemble), prediction on new audio (predict), paired comparisons
(compare) and the results table (report). Nothing below imports this package."""
