"""Teachers: any local folder that `transformers.AutoModelForImageClassification` loads.

`build_teacher` makes one from a config (ViT, ResNet, ConvNeXt) for users who have none; `load_teacher`
loads a user's, checking what a user can get wrong (no config.json, labels that do not match the data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from export.errors import ExportError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TeacherArch(str, Enum):
    VIT = "vit"
    RESNET = "resnet"
    CONVNEXT = "convnext"


@dataclass
class Teacher:
    model: object  # a transformers PreTrainedModel for image classification
    classes: list[str]  # in the model's label order
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def logits(self, x):
        """x: (B, 3, H, W) float, already normalized with this teacher's mean/std -> (B, classes)."""
        return self.model(pixel_values=x).logits


def teacher_config(arch: str, classes: list[str], image_size: int, tiny: bool = False):
    """A transformers config for a teacher; `tiny` for tests (seconds to train)."""
    from transformers import ConvNextConfig, ResNetConfig, ViTConfig

    labels = {"id2label": dict(enumerate(classes)), "label2id": {c: i for i, c in enumerate(classes)},
              "num_labels": len(classes)}
    if arch == TeacherArch.VIT:
        width, depth = (32, 2) if tiny else (160, 6)
        return ViTConfig(image_size=image_size, patch_size=8, hidden_size=width,
                         num_hidden_layers=depth, num_attention_heads=2 if tiny else 4,
                         intermediate_size=width * 4, **labels)
    if arch == TeacherArch.RESNET:
        sizes, depths = ([8, 16, 16, 16], [1, 1, 1, 1]) if tiny else ([64, 128, 256, 512], [2, 2, 2, 2])
        return ResNetConfig(embedding_size=sizes[0], hidden_sizes=sizes, depths=depths, layer_type="basic",
                            **labels)
    if arch == TeacherArch.CONVNEXT:
        sizes, depths = ([8, 16, 16, 16], [1, 1, 1, 1]) if tiny else ([48, 96, 192, 384], [2, 2, 4, 2])
        return ConvNextConfig(hidden_sizes=sizes, depths=depths, image_size=image_size, **labels)
    raise ExportError(f"unknown teacher architecture {arch!r}; choose vit, resnet or convnext")


def build_teacher(arch: str, classes: list[str], image_size: int, tiny: bool = False) -> Teacher:
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_config(teacher_config(arch, classes, image_size, tiny))
    return Teacher(model, list(classes), image_size, IMAGENET_MEAN, IMAGENET_STD)


def save_teacher(teacher: Teacher, out: str | Path) -> None:
    """save_pretrained plus a preprocessor_config.json, so any transformers pipeline can use it."""
    out = Path(out)
    _quiet_transformers()
    teacher.model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True,
        "size": {"height": teacher.image_size, "width": teacher.image_size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(teacher.mean), "image_std": list(teacher.std)}, indent=2) + "\n")


def load_teacher(path: str | Path, classes: list[str] | None = None) -> Teacher:
    """Load a teacher folder; `classes` (the data's) must all be among the teacher's labels."""
    from transformers import AutoModelForImageClassification

    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such teacher folder")
    if not (path / "config.json").is_file():
        raise ExportError(f"{path} is not a transformers model folder: it has no config.json "
                          "(train one with `edge-qwq teacher train` or point --teacher at a save_pretrained folder)")
    _quiet_transformers()
    try:
        model = AutoModelForImageClassification.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ExportError(f"{path}: transformers cannot load this teacher ({str(e).splitlines()[0][:200]})") from None
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if classes is not None:
        missing = [c for c in classes if c not in labels]
        if missing:
            raise ExportError(f"{path}: the teacher's labels {labels} lack the data's class(es) {missing}; "
                              "the teacher must be trained on the same classes")
    size, mean, std = _preprocessing(path, model.config)
    return Teacher(model, labels, size, mean, std)


def _quiet_transformers() -> None:
    """No per-shard progress bars from transformers: a teacher loads in a second, and our own commands
    show their progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _preprocessing(path: Path, config) -> tuple[int, tuple, tuple]:
    pre = path / "preprocessor_config.json"
    d = json.loads(pre.read_text()) if pre.is_file() else {}
    size = d.get("size", {})
    side = size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else size
    side = int(side or getattr(config, "image_size", 0) or 224)
    return side, tuple(d.get("image_mean", IMAGENET_MEAN)), tuple(d.get("image_std", IMAGENET_STD))
