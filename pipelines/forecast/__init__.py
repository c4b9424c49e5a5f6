"""Day-ahead carbon-intensity forecasts: models chosen by backtest, issued through write-audit-publish, read back
for greenest windows and accuracy by horizon."""
