"""The concrete_dropout study: its protocol and report (`study.py`) and its config (`config.py`)."""
