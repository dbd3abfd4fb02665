"""Sliding-window defaults, torch-free so the command line can show them without importing torch."""

#: Window overlap when the caller does not choose one: a fraction of the window along each axis.
#: Why 0.25 (MONAI's default) and not 0.5: in 3D it computes each voxel about 2.4 instead of 8
#: times, and on 30 hippocampus test volumes its labels agree with overlap 0.5's at Dice 0.994,
#: with a ground-truth Dice of 0.8573 against 0.8580 (benchmarks/results/performance). But those
#: volumes are only two windows wide; where the window is small against the volume, the edges
#: of each window count for more: a 16^3-patch model on the same volumes scored 0.601 at 0.25
#: against 0.641 at 0.5 (and 0.548 at 0.125, which is why the overlap goes no lower).
DEFAULT_OVERLAP = 0.25

#: A sliding window larger than the training patch, for ``--window-voxels`` (windows grow only
#: when asked). Why not by default: the U-Net's GroupNorm and attention see the whole window,
#: so a window unlike the training patch changes the output; on the hippocampus test volumes
#: one whole-volume window instead of overlapping training patches lost 1.8 Dice points.
#: Why at most this size when asked: past it a voxel costs more, not less, because attention
#: at 1/4 resolution grows with the square of the window. Measured for the tiny 3D preset
#: (one CPU thread, forward only): 4.6 us per voxel at 32x64x64, 4.5 at 64^3, 5.4 at
#: 48x96x96, 8.7 at 64x128x128 (576 instead of 347 kFLOP per voxel, 1.5 GB of activations).
MAX_WINDOW_VOXELS = 2**18

#: Windows per network call on a CPU (see ``windows.blended_slabs`` for why never one); a GPU
#: takes ``GPU_WINDOWS_PER_CALL``.
CPU_WINDOWS_PER_CALL = 2
GPU_WINDOWS_PER_CALL = 4
