"""Artificial labeled data (``diffusionseg synthesize``, PTDR) and self-training on the unlabeled
images (``diffusionseg selftrain``): label images with a fine-tuned model, keep the confident labels,
and fine-tune again on them (``finetune --extra``)."""
