"""The concrete_mnist study: its protocol and report (`study.py`) and its config (`config.py`)."""
