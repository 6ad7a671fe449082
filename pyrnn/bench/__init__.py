"""The benchmark runner behind ``python -m pyrnn.bench`` (and the ``pyrnn-bench`` script).

Modules, one job each: ``cli`` (arguments), ``grids`` (shapes), ``plan`` (configurations and
their calls), ``contenders`` (pyrnn backends and PyTorch), ``check`` (against the NumPy
reference), ``timing``, ``machine`` (ceilings), ``runner``, ``progress``, ``report`` (the
table), ``results`` (results.json) and ``plots``.
"""
