"""robustbench_in: distribution-shift robustness testbed for ImageNet classifiers.

Layers (imports point down): app/config -> engine -> data, models, corruptions -> results -> metrics/report/plots.
"""

__version__ = "0.1.0"
