"""The WaveNet: dilated causal convolutions (kernel 2), gated units, residual and skip paths, 256-way softmax.

Read top to bottom: WaveNetConfig says the sizes, ResidualLayer is one dilated layer, WaveNet stacks them.
Shapes: B batch, T time, R residual channels, G gate channels, S skip channels, C classes.
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavenet.errors import UserError


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
    weight_norm: bool = False  # every convolution's weight as a length and a direction (Salimans and Kingma, 2016)
    dropout: float = 0.0  # in training, this fraction of each layer's gated units is zeroed (the rest scaled up)

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"model.dropout={self.dropout}: use a fraction from 0 (none, the default) to below 1.")

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
    """x -> dilated causal conv -> tanh * sigmoid -> 1x1 conv split into (residual, skip): its `out` weight holds
    both, residual rows first."""

    def __init__(self, cfg: WaveNetConfig, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.dropout = cfg.dropout
        self.split = [cfg.residual_channels, cfg.skip_channels]
        self.dilated = nn.Conv1d(cfg.residual_channels, 2 * cfg.gate_channels, kernel_size=2, dilation=dilation)
        self.out = nn.Conv1d(cfg.gate_channels, cfg.residual_channels + cfg.skip_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, R, T) -> the next layer's input (B, R, T) and this layer's gated units z (B, G, T), whose skip
        contribution the model takes for all layers in one product (WaveNet.skip_sum)."""
        # Left padding by the dilation keeps the conv causal and the length T.
        h = self.dilated(F.pad(x, (self.dilation, 0)))  # (B, 2G, T)
        filt, gate = h.chunk(2, dim=1)
        z = torch.tanh(filt) * torch.sigmoid(gate)  # (B, G, T)
        if self.dropout:
            z = F.dropout(z, self.dropout, self.training)  # the identity in eval mode, so generation never sees it
        R = self.split[0]
        return x + F.conv1d(z, self.out.weight[:R], self.out.bias[:R]), z


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
        if cfg.weight_norm:  # `.weight` stays the weight in use, so generation reads it as it reads a plain one
            for conv in [m for m in self.modules() if isinstance(m, nn.Conv1d)]:
                nn.utils.parametrizations.weight_norm(conv)

    @property
    def receptive_field(self) -> int:
        return self.cfg.receptive_field

    def forward(self, codes: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """Logits (B, C, T), or of the last `last` positions only (B, C, last): training scores only the positions
        that see a whole receptive field, and the skip sum and the head need not run on the others."""
        logits, _ = self.forward_with_layer_inputs(codes, keep_layer_inputs=False, last=last)
        return logits

    def forward_with_layer_inputs(
        self, codes: torch.Tensor, keep_layer_inputs: bool = True, last: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Full forward that can also return each layer's input (B, R, T): what the cached generator stores."""
        x = self.embed(codes).transpose(1, 2)  # (B, R, T)
        gated, layer_inputs = [], []
        for layer in self.layers:
            if keep_layer_inputs:
                layer_inputs.append(x)
            x, z = layer(x)
            gated.append(z if last is None else z[:, :, z.shape[2] - last :])
        return self.head(self.skip_sum(gated)), layer_inputs

    def skip_sum(self, gated: list[torch.Tensor]) -> torch.Tensor:
        """The sum over layers of each layer's skip 1x1 conv of its gated units, (B, S, T), as one product of all
        layers' units (B, L x G, T) with all their skip weights: a layer at a time, each skip output (S = 4 x R
        channels) would be written and summed L times."""
        R = self.cfg.residual_channels
        weight = torch.cat([layer.out.weight[R:] for layer in self.layers], dim=1)  # (S, L x G, 1)
        bias = torch.stack([layer.out.bias[R:] for layer in self.layers]).sum(0)
        return F.conv1d(torch.cat(gated, dim=1), weight, bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
