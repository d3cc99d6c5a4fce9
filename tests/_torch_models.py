"""Small torch models written the way people write them (residuals, transposes and reshapes
inside ``forward``), for the whole-network import tests."""

import torch
import torch.nn.functional as F
from torch import nn


def flat_mlp(width: int, act=nn.ReLU, depth: int = 4, d_in: int = 12, trailing: bool = False):
    """Linear → act → Linear … (an ordinary flat nn.Sequential MLP)."""
    layers = [nn.Linear(d_in, width)]
    for _ in range(depth):
        layers += [act(), nn.Linear(width, width)]
    if trailing:
        layers.append(act())
    return nn.Sequential(*layers)


def nested_mlp(width: int, act=nn.Tanh, depth: int = 4, d_in: int = 12):
    """(Linear → act) stacks nested in their own nn.Sequential, then a readout Linear."""
    dims = [d_in] + [width] * depth
    return nn.Sequential(*[nn.Sequential(nn.Linear(a, b), act()) for a, b in zip(dims, dims[1:])],
                         nn.Linear(width, width))


class TorchvisionBasicBlock(nn.Module):
    """torchvision's BasicBlock: relu(n2(conv2(relu(n1(conv1(x))))) + downsample(x)), the
    normalisation ``norm(c)`` (BatchNorm, GroupNorm, or the identity) and the 3×3 convs'
    padding mode chosen by the caller; a conv1×1 + norm projection where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, padding_mode: str = "zeros",
                 norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False, padding_mode=padding_mode)
        self.bn1 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False, padding_mode=padding_mode)
        self.bn2 = norm(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            norm(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class PreLNResidual(nn.Module):
    """μ·x + fc2(gelu(fc1(LN(x)))), the sum written in forward."""

    def __init__(self, d: int, mu: float = 1.0):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        self.mu = mu

    def forward(self, x):
        y = self.fc2(F.gelu(self.fc1(self.norm(x))))
        return x + y if self.mu == 1.0 else self.mu * x + y


class RankDependent(nn.Module):
    """A residual block whose forward branches on the input's rank: torch.fx cannot trace it
    (a traced value in control flow), torch.export can."""

    def __init__(self, d: int, mu: float = 0.5):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.mu = mu

    def forward(self, x):
        if x.dim() == 3:
            x = x.flatten(0, 1)
        return self.mu * x + self.fc(torch.tanh(x))


class MixerBlock(nn.Module):
    """Token mixing through transposes written in forward, then channel mixing."""

    def __init__(self, tokens: int, channels: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.tok1 = nn.Linear(tokens, tokens)
        self.tok2 = nn.Linear(tokens, tokens)
        self.norm2 = nn.LayerNorm(channels)
        self.ch1 = nn.Linear(channels, channels)
        self.ch2 = nn.Linear(channels, channels)

    def forward(self, x):
        y = self.norm1(x).transpose(1, 2)  # 'b t c -> b c t'
        x = x + self.tok2(F.gelu(self.tok1(y))).transpose(1, 2)
        return x + self.ch2(F.gelu(self.ch1(self.norm2(x))))


class Mixer(nn.Module):
    """Patchify stem (strided conv + rearrange 'b c h w -> b (h w) c'), Mixer blocks, a
    norm → token-mean → classifier head."""

    def __init__(self, channels: int = 16, patch: int = 4, image: int = 16, depth: int = 2):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, channels, patch, stride=patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, channels) for _ in range(depth)])
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).permute(0, 2, 1)
        x = self.blocks(x)
        return self.head(self.norm(x).mean(dim=1))


def _bn(c: int):
    # batch statistics in every mode and no running-statistics update (cs.apjn's torch.func
    # transforms refuse the in-place update)
    return nn.BatchNorm2d(c, track_running_stats=False)


class BasicBlock(nn.Module):
    """Pre-activation ResNet block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, c: int):
        super().__init__()
        self.bn1, self.bn2 = _bn(c), _bn(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, padding_mode="circular")
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, padding_mode="circular")

    def forward(self, x):
        return x + self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


class ResNet(nn.Module):
    """Strided conv stem → BN, pre-activation blocks, BN → ReLU → global pool → classifier."""

    def __init__(self, channels: int = 8, depth: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, stride=2, padding=1, padding_mode="circular")
        self.bn1 = _bn(channels)
        self.layer1 = nn.Sequential(*[BasicBlock(channels) for _ in range(depth)])
        self.bn2 = _bn(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x):
        x = self.layer1(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(F.relu(self.bn2(x))), 1))


class ViTBlock(nn.Module):
    """Pre-LN transformer block written in forward around an attention module."""

    def __init__(self, attn: nn.Module, d: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = attn
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Patchify stem, rearrange 'b c h w -> b (h w) c', a learned position embedding, blocks
    around critsym's exported uniform attention (the regime with an exact theory), norm →
    token mean → classifier."""

    def __init__(self, channels: int = 16, patch: int = 4, image: int = 16, depth: int = 2):
        import critsym as cs
        from critsym.ops.attention import Attention

        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, channels, patch, stride=patch)
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens, channels))
        attn = Attention(tokens, "uniform", sigma_v=1.0, sigma_o=1.0)
        seed = int(torch.randint(0, 2**31 - 1, ()))
        self.blocks = nn.Sequential(*[
            ViTBlock(cs.to_torch_model(attn, channels, 1, seed=seed + i, dtype=torch.float32)[0],
                     channels) for i in range(depth)])
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, 10)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(dim=1))
