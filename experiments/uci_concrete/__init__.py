"""The uci_concrete study: its protocol and report (`study.py`) and its config (`config.py`)."""
