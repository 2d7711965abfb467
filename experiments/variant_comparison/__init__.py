"""The variant_comparison study: its protocol and report (`study.py`), its config
(`config.py`)."""
