"""The ensemble_interpretation study: its protocol and report (`study.py`), its config
(`config.py`)."""
