"""Run under torchrun by test_distributed.py: pretrain, then compare the ranks' weights."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from DiffusionSegLib.pretrain.run import PretrainOptions, pretrain

images, out, report = (Path(a) for a in sys.argv[1:4])
dist.init_process_group("gloo")
trained = []
# pretrain() joins the group made here and leaves it open, so the ranks can be compared after.
summary = pretrain(PretrainOptions(images=images, out=out, preset="tiny", iterations=4, batch_size=4,
                                   image_size=[32, 32], checkpoint_every=2, device="cpu", progress="none",
                                   warmup_steps=0), trained=trained)
flat = torch.cat([v.detach().flatten().float() for v in trained[0].state_dict().values()])
gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], g) for g in gathered[1:])
    report.write_text(f"{'identical' if same else 'different'} world={summary['world_size']}")
dist.barrier()  # leave together (see DistContext.close)
dist.destroy_process_group()
