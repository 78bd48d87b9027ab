"""Explanations: SHAP contributions, reason codes and sentences, records behind them, reports."""
