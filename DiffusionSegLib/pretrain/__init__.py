"""``diffusionseg pretrain``: the self-supervised backbone every task starts from (:mod:`.run`).

A pipeline stage over the runtime in ``DiffusionSegLib.training`` (device, progress,
checkpoints, the training loop, the run guard), which never imports it.
"""
