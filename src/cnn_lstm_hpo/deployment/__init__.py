"""After the search: retrain and test the chosen configurations, save and register them, predict."""
