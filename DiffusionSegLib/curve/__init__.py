"""``diffusionseg curve``: a label-efficiency curve from the labeled cases (plan, fit, report, run)."""
