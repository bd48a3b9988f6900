"""Shared pieces of the fastconv.torch tests: tolerances and a small ResNet-18-style network.

(Named uniquely: test directories have no __init__.py, so module basenames must not collide.)
"""
import torch
from torch import nn
import torch.nn.functional as TF

# Per-dtype tolerances for fastconv (NumPy im2col + BLAS) against torch's own CPU kernels. Both sum
# the same products in different orders, so float32 differs by a few ulps of the reduction size.
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=2e-4, atol=2e-5)}


def close(actual, expected, dtype=None, scale=1.0, msg=""):
    tol = TOL[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale, msg=msg or None)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = TF.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return TF.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (BasicBlock x [2, 2, 2, 2], BN, residual adds, 1x1 downsample,
    global average pool, fc) at small width. stem='maxpool' is the ImageNet stem (7x7/2 conv +
    3x3/2 max-pool); stem='cifar' a 3x3 conv without pooling."""

    def __init__(self, width=8, num_classes=10, stem="maxpool"):
        super().__init__()
        if stem == "maxpool":
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():   # torchvision-style init code: isinstance checks must keep working
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(TF.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class SmallNet(nn.Module):
    """Conv (same, bias) -> BN -> ReLU -> MaxPool (ceil) -> grouped strided conv -> residual-free head."""

    def __init__(self, width=8, num_classes=5):
        super().__init__()
        self.c1 = nn.Conv2d(3, width, 3, padding="same")
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.c2 = nn.Conv2d(width, width, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.pool(TF.relu(self.bn(self.c1(x))))
        x = TF.relu(self.c2(x))
        return self.fc(torch.flatten(TF.adaptive_avg_pool2d(x, 1), 1))


def twin(factory, seed=0, dtype=torch.float32):
    """(torch model, fastconv-converted copy with the same state dict)."""
    import fastconv.torch as fct
    torch.manual_seed(seed)
    ref = factory().to(dtype)
    model = factory().to(dtype)
    model.load_state_dict(ref.state_dict())
    fct.convert(model)
    return ref, model
