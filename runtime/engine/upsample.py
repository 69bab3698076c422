"""Nearest 2x upsampling followed by a 3x3 convolution, computed without the upsampled map.

The SD VAE decoder (and the UNet) upsample with `F.interpolate(mode="nearest")` and then run a
3x3 convolution on the map four times as large. Every output pixel of that convolution reads at
most two distinct input rows and two distinct input columns, so the pair is exactly one strided
transposed convolution with a 4x4 kernel over the small map: 16 multiply-adds per input pixel
and channel pair instead of 36. In the decoder these convolutions are 173 of its ~622 GFLOP per
frame; folded, they cost 77.

Row taps, for upsampled-then-convolved output row 2i+a (3x3 weights w0 w1 w2, zero padding 1):
a=0 reads input rows i-1 (w0) and i (w1+w2); a=1 reads i (w0+w1) and i+1 (w2). That is the
transposed-convolution kernel [w2, w1+w2, w0+w1, w0] at stride 2, padding 1, and the same per
column. The folded weights are summed in float32 and cast once, so the result matches the
original up to the order of additions (tests: equal within float tolerance, borders included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

# Which 3x3 taps (row or column) land on each of the 4 transposed-kernel positions.
_TAPS_PER_POSITION = ((2,), (1, 2), (0, 1), (0,))


def fold_weight(conv_weight: torch.Tensor) -> torch.Tensor:
    """[out, in, 3, 3] convolution weight -> [in, out, 4, 4] transposed-convolution weight."""
    weight = conv_weight.detach().to(torch.float32)
    rows = torch.stack([weight[:, :, list(taps)].sum(dim=2) for taps in _TAPS_PER_POSITION], 2)
    both = torch.stack([rows[..., list(taps)].sum(dim=3) for taps in _TAPS_PER_POSITION], 3)
    return both.transpose(0, 1).contiguous()


class FoldedUpsampleConv(torch.nn.Module):
    """Drop-in for a diffusers `Upsample2D` (nearest 2x, then 3x3 conv with padding 1)."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.channels = conv.in_channels
        self.out_channels = conv.out_channels
        folded = fold_weight(conv.weight).to(dtype=conv.weight.dtype, device=conv.weight.device)
        self.weight = torch.nn.Parameter(folded, requires_grad=False)
        self.bias = (
            None
            if conv.bias is None
            else torch.nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        )

    def forward(
        self, hidden_states: torch.Tensor, output_size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        height, width = hidden_states.shape[-2:]
        if output_size is not None and tuple(output_size) != (2 * height, 2 * width):
            raise ValueError(f"folded upsampling only doubles: {output_size} from {height}x{width}")
        folded = F.conv_transpose2d(hidden_states, self.weight, self.bias, stride=2, padding=1)
        # cuDNN may hand the result back channels-last; the decoder's next layers run slower
        # on that layout in eager mode, so keep the layout the unfolded module produced.
        return folded.contiguous()


def fold_upsamplers(model: torch.nn.Module) -> int:
    """Replace every foldable `Upsample2D` in `model` in place; returns how many were replaced.

    Foldable = nearest interpolation, a 3x3 convolution with padding 1 and stride 1, no norm.
    Others (transposed convolutions, normed, other kernels) are left as they are.
    """
    from diffusers.models.upsampling import Upsample2D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            conv = _foldable_conv(child) if isinstance(child, Upsample2D) else None
            if conv is not None:
                setattr(parent, name, FoldedUpsampleConv(conv))
                replaced += 1
    return replaced


def _foldable_conv(upsampler: torch.nn.Module) -> torch.nn.Conv2d | None:
    if not getattr(upsampler, "interpolate", False) or not getattr(upsampler, "use_conv", False):
        return None
    if getattr(upsampler, "use_conv_transpose", False) or upsampler.norm is not None:
        return None
    conv = getattr(upsampler, "conv", None) or getattr(upsampler, "Conv2d_0", None)
    if not isinstance(conv, torch.nn.Conv2d):
        return None
    if (
        conv.kernel_size != (3, 3)
        or conv.padding != (1, 1)
        or conv.stride != (1, 1)
        or conv.dilation != (1, 1)
        or conv.groups != 1
    ):
        return None
    return conv
