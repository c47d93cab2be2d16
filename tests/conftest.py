"""Hypothesis without per-example deadlines: the properties check results, not speed (a 200 ms
deadline failed a float-order test that took 800 ms while the machine was shared)."""
from hypothesis import settings

settings.register_profile("qnn_plugin", deadline=None)
settings.load_profile("qnn_plugin")
