"""Installs the tests' network guard in every Python process started with this folder on PYTHONPATH.

See ``tests/netguard.py``.  A test puts this folder first on ``PYTHONPATH``
(``netguard.guarded_env``) for the processes it starts: training commands,
``torchrun`` ranks, papermill kernels.
"""
import os
import sys

_tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _tests)
try:
    import netguard
finally:
    sys.path.remove(_tests)
netguard.install(no_sockets=os.environ.get(netguard.NO_SOCKETS_ENV) == "1")
del _tests
