"""What reads a finished study: the Pareto data (``pareto``), the HTML report (``report``), the exported
configuration (``export``) and the applied model (``apply``)."""
