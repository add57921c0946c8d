"""Voting over every trained experiment: `python ensemble/vote.py [--dataset mini] [key=value ...]`.

Thin entry point; the work is in src/antispoof/ensemble (configs/ensemble/default.yaml).
"""
import sys

from antispoof.commands.ensemble import main

if __name__ == "__main__":
    sys.exit(main("vote"))
