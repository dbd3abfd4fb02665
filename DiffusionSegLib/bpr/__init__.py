"""Body-part regression (BPR): a self-supervised score of body height for each axial CT slice.

Yan et al. (2018), "Unsupervised body part regression via spatially self-ordering
convolutional neural networks": a 2D CNN scores axial slices, trained only on the fact
that, within one volume, a slice higher in the body must score higher, and that
equally spaced slices must be equally far apart in score. No labels are needed.

- :mod:`.model`: the slice regressor, ``(N, 1, H, W) -> (N,)``.
- :mod:`.slices`: orienting a volume and taking its axial slices as network input.
- :mod:`.losses`: the order and distance losses.
- :mod:`.train`: ``diffusionseg bpr train``.
- :mod:`.predict`: per-slice scores, ``diffusionseg bpr predict``.

The body-part coordinate map that conditions the diffusion U-Net is made from these scores
by ``DiffusionSegLib.data.coordinates.body_part_map``, with the other coordinate sources:
data uses bpr, never the other way round.
"""
