"""Architecture registry: builder, LRP canonizers and default CAV layer of each architecture, declared together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch.nn as nn
import torchvision
from torchvision.models.vgg import make_layers
from zennit.canonizers import Canonizer

from backend.errors import ConfigError
from backend.models.canonizers import EfficientNetCanonizer, ResNetCanonizer, VGGCanonizer

__all__ = ["Architecture", "register_model", "get_architecture", "architecture_names", "build_model", "CompactVGG"]

Builder = Callable[[int], nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture. `canonizers()` returns fresh zennit canonizers for LRP (None: no LRP support, heatmaps
    fall back to gradient x input); `default_layer` names the module whose output is the default CAV layer;
    `input_size` is the image size it is built for."""

    name: str
    builder: Builder
    canonizers: Callable[[], list[Canonizer]] | None
    default_layer: str
    input_size: int
    description: str


_ARCHITECTURES: dict[str, Architecture] = {}


def register_model(
    name: str,
    *,
    canonizers: Callable[[], list[Canonizer]] | None,
    default_layer: str,
    input_size: int,
    description: str,
) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = Architecture(name, builder, canonizers, default_layer, input_size, description)
        return builder

    return decorate


def architecture_names() -> tuple[str, ...]:
    return tuple(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(f"unknown architecture {name!r}; known: {', '.join(_ARCHITECTURES)}") from None


def build_model(name: str, num_classes: int) -> nn.Module:
    """A freshly initialised model (no pretrained weights: nothing is downloaded) with `num_classes` outputs."""
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    model = get_architecture(name).builder(num_classes)
    _disable_inplace(model)
    return model


def _disable_inplace(model: nn.Module) -> None:
    """In-place activations break backward hooks (LRP) and gradients taken at their outputs (RR-ClArC)."""
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False


class CompactVGG(nn.Module):
    """A small VGG with batch norm for CPU work, named like torchvision's VGG (`features`, `avgpool`,
    `classifier` with the same indices), so layer names, canonizers and tools carry over."""

    CONFIG = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M")

    def __init__(self, num_classes: int, width: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.features = make_layers(list(self.CONFIG), batch_norm=True)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        channels = self.CONFIG[-2]
        self.classifier = nn.Sequential(
            nn.Linear(channels * 4, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(width, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _vgg_canonizers() -> list[Canonizer]:
    return [VGGCanonizer()]


def _resnet_canonizers() -> list[Canonizer]:
    return [ResNetCanonizer()]


def _efficientnet_canonizers() -> list[Canonizer]:
    return [EfficientNetCanonizer()]


@register_model(
    "vgg_compact",
    canonizers=_vgg_canonizers,
    default_layer="features.20",
    input_size=64,
    description="compact VGG with batch norm (6 conv layers, 0.4 M parameters), the CPU default",
)
def _vgg_compact(num_classes: int) -> nn.Module:
    return CompactVGG(num_classes)


def _torchvision(name: str, num_classes: int) -> nn.Module:
    """torchvision's model `name`, without pretrained weights (weights come only from checkpoints)."""
    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


_TORCHVISION = (  # name, canonizers, default CAV layer, description
    ("vgg16", _vgg_canonizers, "features.29", "torchvision VGG-16 (the seed paper's main architecture)"),
    ("resnet18", _resnet_canonizers, "layer4", "torchvision ResNet-18"),
    ("efficientnet_b0", _efficientnet_canonizers, "features.7", "torchvision EfficientNet-B0"),
)
for _name, _canonizers, _layer, _description in _TORCHVISION:
    register_model(_name, canonizers=_canonizers, default_layer=_layer, input_size=224, description=_description)(
        partial(_torchvision, _name)
    )
