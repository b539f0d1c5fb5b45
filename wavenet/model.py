"""The WaveNet: dilated causal convolutions (kernel 2), gated units, residual and skip paths, 256-way softmax.

Read top to bottom: WaveNetConfig says the sizes, ResidualLayer is one dilated layer, WaveNet stacks them.
Shapes: B batch, T time, R residual channels, G gate channels, S skip channels, C classes.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class WaveNetConfig:
    """Everything needed to rebuild a WaveNet; stored in checkpoints as plain data."""

    sample_rate: int = 16000
    stacks: int = 3  # the dilation pattern 1, 2, 4, ... repeats this many times
    layers_per_stack: int = 10  # dilations 1 .. 2**(layers_per_stack - 1)
    residual_channels: int = 64
    gate_channels: int = 64  # the dilated conv makes 2 x gate_channels: tanh half and sigmoid half
    skip_channels: int = 256
    classes: int = 256  # mu-law levels

    @property
    def dilations(self) -> list[int]:
        return [2**i for _ in range(self.stacks) for i in range(self.layers_per_stack)]

    @property
    def receptive_field(self) -> int:
        """Samples of input that one output sees: 1 + sum of dilations (kernel size 2)."""
        return 1 + sum(self.dilations)

    def to_dict(self) -> dict:
        return asdict(self)


class ResidualLayer(nn.Module):
    """x -> dilated causal conv -> tanh * sigmoid -> 1x1 conv split into (residual, skip)."""

    def __init__(self, cfg: WaveNetConfig, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.split = [cfg.residual_channels, cfg.skip_channels]
        self.dilated = nn.Conv1d(cfg.residual_channels, 2 * cfg.gate_channels, kernel_size=2, dilation=dilation)
        self.out = nn.Conv1d(cfg.gate_channels, cfg.residual_channels + cfg.skip_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, R, T). Left padding by the dilation keeps the conv causal and the length T.
        h = self.dilated(F.pad(x, (self.dilation, 0)))  # (B, 2G, T)
        filt, gate = h.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)  # (B, G, T)
        residual, skip = self.out(z).split(self.split, dim=1)
        return x + residual, skip  # (B, R, T), (B, S, T)


class WaveNet(nn.Module):
    """Mu-law codes (B, T) -> logits (B, C, T); the logits at t predict the code at t + 1."""

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.classes, cfg.residual_channels)
        self.layers = nn.ModuleList(ResidualLayer(cfg, d) for d in cfg.dilations)
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(cfg.skip_channels, cfg.skip_channels, kernel_size=1),
            nn.ReLU(),
            nn.Conv1d(cfg.skip_channels, cfg.classes, kernel_size=1),
        )

    @property
    def receptive_field(self) -> int:
        return self.cfg.receptive_field

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        logits, _ = self.forward_with_layer_inputs(codes, keep_layer_inputs=False)
        return logits

    def forward_with_layer_inputs(
        self, codes: torch.Tensor, keep_layer_inputs: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Full forward that can also return each layer's input (B, R, T): what the cached generator stores."""
        x = self.embed(codes).transpose(1, 2)  # (B, R, T)
        skip_sum = 0
        layer_inputs = []
        for layer in self.layers:
            if keep_layer_inputs:
                layer_inputs.append(x)
            x, skip = layer(x)
            skip_sum = skip_sum + skip  # (B, S, T)
        return self.head(skip_sum), layer_inputs

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
