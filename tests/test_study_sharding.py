"""Studies shard their models over local devices (``config.devices``) without changing what
they compute: each model's keys, data and program are those of the one-device run, so the
choices (grid points, acquired labels) are the same and the numbers agree to float rounding
(XLA may fuse the per-device program differently)."""

import pytest
from simulated_devices import run_on_simulated_devices

from experiments import config_checks
from experiments import study as study_lib
from experiments.uci import config as uci_config

_SHARDED_STUDIES = r"""
import os, shutil, tempfile, time
import jax, numpy as np
from experiments import main
from experiments.active_learning import config as al_config
from experiments.uci import config as uci_config
from experiments.uci_concrete import config as concrete_config
assert len(jax.local_devices()) == 4

def assert_same(a, b, where):
  # Choices and counts exactly, floats to rounding.
  if isinstance(a, dict):
    assert sorted(a) == sorted(b), where
    for k in a:
      assert_same(a[k], b[k], f"{where}.{k}")
  elif isinstance(a, (list, tuple)):
    assert len(a) == len(b), where
    for i, (x, y) in enumerate(zip(a, b)):
      assert_same(x, y, f"{where}[{i}]")
  elif isinstance(a, float):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=where)
  else:
    assert a == b, (where, a, b)
data_dir = DATA_DIR
# 2 splits on 3 devices (padded to 3; the resume below takes 2, which divides them), 3 runs
# on 2 devices (padded to 4). Each device count compiles every program anew, and compiling
# is most of this test's time, so each study gets one count (UCI's 4 devices went).
for name, get_config, counts in (("uci", uci_config.get_config, (3,)),
                                 ("uci_concrete", concrete_config.get_config, (3,)),
                                 ("active_learning", al_config.get_config, (2,))):
  summaries = {}
  for devices in (1, *counts):
    config = get_config("quick")
    config.devices = devices
    if name == "active_learning":
      config.rounds = 1
    else:  # a smaller test pass; one that divides among the devices is not needed
      config.data_dir, config.mc_samples = data_dir, 50
    tic = time.perf_counter()
    workdir = tempfile.mkdtemp()
    summary = main.run_study(config, workdir)
    summary.pop("seconds", None)
    summaries[devices] = summary
    print(name, devices, "devices:", round(time.perf_counter() - tic, 1), "s")
  for devices in counts:
    assert_same(summaries[1], summaries[devices], f"{name} on {devices} devices")
  print(name, "same on", counts)
  if name == "uci":
    # Killed before its final test: resumes from the restored final model on 2 devices.
    folder = os.path.join(workdir, "yacht")
    os.remove(os.path.join(folder, "results.json"))
    shutil.rmtree(os.path.join(folder, "checkpoints", "final_test"))
    config.devices = 2
    resumed = main.run_study(config, workdir)
    resumed.pop("seconds", None)
    assert_same(summaries[1], resumed, "uci resumed on 2 devices")
    print("uci resumed on 2 devices")
print("OK")
"""


def test_sharded_studies_make_the_one_device_choices_and_numbers(data_dir):
  out = run_on_simulated_devices(_SHARDED_STUDIES.replace("DATA_DIR", repr(data_dir)), 4)
  print(out)
  assert "active_learning same on (2,)" in out and "uci resumed on 2 devices" in out


def test_more_devices_than_the_process_has_is_refused_by_name():
  config = uci_config.get_config("quick")
  config.devices = 64
  with pytest.raises(config_checks.ConfigError, match=r"config.devices = 64: this process has"):
    study_lib.model_mesh(config)
