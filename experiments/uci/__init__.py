"""The uci study: its protocol and report (`study.py`) and its config (`config.py`)."""
