"""Which cases to annotate next: representative picks from a pretrained model's features (cold start),
or a mix of a fine-tuned model's uncertainty and distance from the labeled cases."""
