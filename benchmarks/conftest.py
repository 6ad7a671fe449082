"""Shared setup of the pytest-benchmark suites under benchmarks/.

Saved runs (``--benchmark-autosave``, ``--benchmark-save=NAME``) carry pyrnn's backend_info,
the PyTorch version and the thread counts in their machine_info, so that ``--benchmark-compare``
shows what changed besides the code.
"""

from __future__ import annotations

import pyrnn
from pyrnn.bench.contenders import BACKENDS, torch_version
from pyrnn.bench.machine import usable_cpus


def pytest_addoption(parser):
    parser.addoption("--pyrnn-backends", default=None, metavar="LIST",
                     help="backends for benchmarks/test_throughput.py, from "
                          f"{','.join(BACKENDS)} (default: every one available here)")


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["pyrnn"] = pyrnn.backend_info()
    machine_info["torch"] = torch_version()
    machine_info["usable_cpus"] = usable_cpus()
