"""The search engine: ``search`` (validate, open or resume, run), the runners (Ray, in-process), the
driver (ask/tell, budget gating, failures), the trial function, early stopping, budgets and the
exclusive re-measure of the front."""
