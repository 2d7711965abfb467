"""The mc_calibration study: its protocol and report (`study.py`) and its config (`config.py`)."""
