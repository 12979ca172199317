"""robustbench_in: distribution-shift robustness testbed for ImageNet classifiers.

Layers (imports point down): cli -> config, tasks -> train, evaluate -> models, data -> report.metrics, files;
report reads result files, never the engine; the corruption library (``corruptions``) never imports this package.
"""

__version__ = "0.1.0"
