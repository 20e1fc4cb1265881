"""What a finished (or running) study tells its user: analysis, plots, the HTML report, the live dashboard."""
