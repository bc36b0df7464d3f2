"""autotradeoff: search accuracy-versus-cost settings of neural-network efficiency techniques.

Library entry points: ``search`` (run/resume a study), ``run_trial`` (one config, no Optuna/Ray),
``load_space`` (validated YAML space), ``get_task``; see the README for the CLI.
"""

from autotradeoff.errors import AutotradeoffError, DataMissingError, TrialFailed, UsageError

__version__ = "0.1.0"
__all__ = ["AutotradeoffError", "DataMissingError", "TrialFailed", "UsageError", "__version__"]
