"""The studies of notebook 05: label noise, reward staleness, early signals."""
